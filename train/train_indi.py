#!/usr/bin/env python
"""Train an InDI restoration model (run with `accelerate launch -m train.train_indi ...`).

Follows diffusers' examples/unconditional_image_generation/train_unconditional.py: flat argparse, Accelerator with
mixed precision and gradient accumulation, AdamW + warm-up + cosine, EMA, checkpoint-N folders with a total limit,
`--resume_from_checkpoint latest`, tensorboard, and a final model repo that `InDIPipeline.from_pretrained` loads.

Data: `--train_data_dir` (clean photos, degraded on the fly by `indi_pipeline.degradations`), `--paired_data_dir`
(`clean/` + `degraded/`, for a degradation we do not model) or `--dataset_name` (a `datasets` dataset), decoded once
into memory; random crops are cut on the training device (`--crop_sampler`, see `batch_stream`).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast, set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from indi_pipeline import InDINet, InDIPipeline, InDIScheduler, get_task
from indi_pipeline.acceleration import resolve_dtype, reuse_freed_memory, use_compile_cache
from indi_pipeline.degradations import pipeline_input
from indi_pipeline.machine import cpu_model, threads_text
from indi_pipeline.metrics import psnr
from indi_pipeline.scheduling_indi import NOISE_SCHEDULES, T_SAMPLINGS
from indi_pipeline.tasks import TASKS
from train.data import (
    DataError,
    RandomCropStream,
    load_clean_folder,
    load_hf_dataset,
    load_paired_folder,
)
from train.device_crops import DeviceCropSampler
from train.device_degradation import MIXES, DeviceDegrader
from train.grow_network import BLOCK_KEYS, grow_network

logger = get_logger(__name__, log_level="INFO")
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "train_state.json"
TIME_SYNC_STEPS = 10
# InDINet's own defaults for a new network (a fine-tune takes its base's config instead).
_NETWORK_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(InDINet).parameters.items()}
DEFAULT_WIDTH, DEFAULT_UNSHUFFLE = _NETWORK_DEFAULTS["width"], _NETWORK_DEFAULTS["unshuffle"]
DEFAULT_ENCODER_BLOCKS = _NETWORK_DEFAULTS["encoder_blocks"]
# --crop_sampler auto cuts crops on the device when the decoded images take at most this fraction of the device's
# free memory (CUDA), or at most CPU_CROP_MEMORY_BYTES on other devices (where the "upload" is a second copy in RAM).
DEVICE_CROP_MEMORY_FRACTION = 0.25
CPU_CROP_MEMORY_BYTES = 4 * 2**30
# Recorded in train_info.json when a launcher script sets them (see the record's comment).
LAUNCHED_BY_ENV, CONCURRENT_RUNS_ENV = "INDI_LAUNCHED_BY", "INDI_CONCURRENT_RUNS"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train an InDI image-restoration model.")
    # data
    parser.add_argument(
        "--task", type=str, required=True, choices=sorted(TASKS), help="Restoration task (design.md §4)."
    )
    parser.add_argument("--train_data_dir", type=str, default=None, help="Folder of clean images, degraded on the fly.")
    parser.add_argument(
        "--paired_data_dir", type=str, default=None, help="Folder with clean/ and degraded/ images of matching names."
    )
    parser.add_argument("--dataset_name", type=str, default=None, help="A `datasets` dataset name or imagefolder path.")
    parser.add_argument("--dataset_config_name", type=str, default=None, help="Config name of --dataset_name.")
    parser.add_argument("--dataset_split", type=str, default="train", help="Split of --dataset_name to train on.")
    parser.add_argument("--image_column", type=str, default="image", help="Image column of --dataset_name.")
    parser.add_argument("--validation_data_dir", type=str, default=None, help="Clean images for periodic validation.")
    parser.add_argument("--resolution", type=int, default=128, help="Training crop size (multiple of the net's).")
    parser.add_argument(
        "--crop_sampler",
        type=str,
        default="auto",
        choices=["auto", "device", "workers"],
        help="Where random crops are cut: `device` (batched on the training device), `workers` (DataLoader "
        "workers), or `auto`: device, except for synthetic JPEG (PIL in the workers) or images too big for the device.",
    )
    parser.add_argument(
        "--dataloader_num_workers", type=int, default=2, help="DataLoader workers (with --crop_sampler workers)."
    )
    parser.add_argument(
        "--synthetic_data",
        action="store_true",
        help="Benchmark only: train on one fixed random batch kept on the device, to measure what the loader costs.",
    )
    # output and run length
    parser.add_argument("--output_dir", type=str, required=True, help="Where the model repo and checkpoints go.")
    parser.add_argument("--train_batch_size", type=int, default=16, help="Batch size per device.")
    parser.add_argument("--max_train_steps", type=int, default=10000, help="Optimizer steps to train for.")
    parser.add_argument(
        "--max_train_minutes", type=float, default=None, help="Wall-clock limit; the LR schedule follows it too."
    )
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Batches per optimizer step.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the model init, data stream and degradations.")
    # optimisation
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Peak learning rate (AdamW).")
    parser.add_argument("--lr_warmup_steps", type=int, default=500, help="Linear warm-up steps.")
    parser.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    parser.add_argument("--adam_beta2", type=float, default=0.99, help="AdamW beta2.")
    parser.add_argument("--adam_weight_decay", type=float, default=0.0, help="AdamW weight decay.")
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm.")
    parser.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=True, help="Keep an EMA model.")
    parser.add_argument("--ema_max_decay", type=float, default=0.999, help="Maximum EMA decay.")
    parser.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["auto", "no", "fp16", "bf16"],
        help="Autocast dtype of the forward passes. 'auto': bf16 where the hardware computes it natively (a CPU with "
        "AVX-512 BF16 or AMX, a CUDA GPU with bf16), else no. Default: accelerate's config (`accelerate launch`), "
        "else auto. An explicit value overrides the config.",
    )
    parser.add_argument("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere+ GPUs.")
    parser.add_argument(
        "--channels_last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Run the network in channels_last memory format (faster on GPU, and with bf16 on the CPU). Default: on "
        "for bf16 on the CPU, off elsewhere.",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network's training forward and backward (inductor). For GPUs, where steps of a small "
        "network are bound by kernel launches; the first step compiles (tens of seconds, cached on disk).",
    )
    # InDI
    parser.add_argument("--eps", type=float, default=None, help="Path noise level eps (default: the task's).")
    parser.add_argument("--noise_schedule", type=str, default="constant", choices=NOISE_SCHEDULES, help="eps_t form.")
    parser.add_argument(
        "--t_sampling", type=str, default="uniform", choices=T_SAMPLINGS, help="p(t); `one` = plain regression."
    )
    parser.add_argument("--t_one_probability", type=float, default=0.1, help="Mass at t = 1 for `mixture`.")
    parser.add_argument(
        "--degradation_mix",
        type=str,
        default="benchmark",
        choices=MIXES,
        help="Synthetic degradations: `benchmark`, the task's definition (design.md section 4), or `photo`, "
        "indi_pipeline.photo_mix's wider mix closer to real photos (camera noise, JPEG q10-90 and 4:4:4 and twice, "
        "milder and Gaussian blur). Validation scores on the definition either way.",
    )
    parser.add_argument(
        "--loss",
        type=str,
        default="l1",
        choices=sorted(LOSSES),
        help="Loss on the clean prediction: `l1`, `l2`, `psnr` (minus each image's PSNR, averaged: every image's "
        "relative error counts alike, as in the evaluation's mean PSNR over crops; NAFNet's PSNRLoss), or `nmse` "
        "(each image's MSE over its degraded input's: every image's difficulty counts alike, while an x_t near the "
        "clean image, at small t, keeps the small weight it has under l2).",
    )
    parser.add_argument(
        "--init_from",
        type=str,
        default=None,
        help="Model repo to fine-tune (its network config). With --encoder_blocks/--middle_blocks/--decoder_blocks "
        "it is first grown to that depth: added blocks start as identities, so training starts from the same outputs.",
    )
    # network size (without --init_from; with it, only the block counts apply, to grow the base)
    parser.add_argument(
        "--width", type=int, default=None, help=f"InDINet channels of the first level (default: {DEFAULT_WIDTH})."
    )
    parser.add_argument(
        "--encoder_blocks", type=int, nargs="+", default=None, help="Blocks per encoder level (default: 1 1 1 1)."
    )
    parser.add_argument("--middle_blocks", type=int, default=None, help="Blocks at the lowest resolution (default: 2).")
    parser.add_argument(
        "--decoder_blocks",
        type=int,
        nargs="+",
        default=None,
        help="Blocks per decoder level, lowest resolution first (default: 1 1 1 1).",
    )
    parser.add_argument(
        "--unshuffle",
        type=int,
        default=None,
        help=f"InDINet input pixel-unshuffle factor (default: {DEFAULT_UNSHUFFLE}): 4 makes the first level run at 1/4 "
        "resolution (needs --width >= 48; faster per forward on the CPU, but it restored less well in a trial: see "
        "README, Performance).",
    )
    # checkpoints, logging, validation
    parser.add_argument("--checkpointing_steps", type=int, default=1000, help="Save a checkpoint every N steps.")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2, help="Keep at most this many checkpoints.")
    parser.add_argument(
        "--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder, or `latest` in --output_dir."
    )
    parser.add_argument("--logging_steps", type=int, default=50, help="Log loss and images/s every N steps.")
    parser.add_argument("--validation_steps", type=int, default=1000, help="Validate every N steps (0 = never).")
    parser.add_argument("--validation_inference_steps", type=int, default=8, help="InDI steps for validation.")
    parser.add_argument("--report_to", type=str, default="tensorboard", help="Tracker (`tensorboard` or `none`).")
    parser.add_argument("--logging_dir", type=str, default="logs", help="Tracker folder, relative to --output_dir.")
    # publishing
    parser.add_argument("--push_to_hub", action="store_true", help="Upload the final repo to the Hub.")
    parser.add_argument("--hub_model_id", type=str, default=None, help="Hub repo id for --push_to_hub.")
    parser.add_argument("--hub_token", type=str, default=None, help="Hub token (else the cached login).")
    args = parser.parse_args(argv)

    sources = [s for s in (args.train_data_dir, args.paired_data_dir, args.dataset_name) if s]
    if len(sources) != 1 and not (args.synthetic_data and not sources):
        parser.error("give exactly one of --train_data_dir, --paired_data_dir, --dataset_name")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id")
    if args.crop_sampler == "device" and jpeg_in_workers(args):
        parser.error("--crop_sampler device cannot JPEG-compress crops (PIL, on the CPU): use auto or workers")
    if args.init_from is not None:
        size_flags = [f"--{flag}" for flag in ("width", "unshuffle") if getattr(args, flag) is not None]
        if size_flags:
            parser.error(
                f"{' and '.join(size_flags)} set the size of a new network; with --init_from the network is the base "
                f"repo's own (grow it deeper with --encoder_blocks/--middle_blocks/--decoder_blocks)"
            )
        base_config = InDINet.load_config(args.init_from, subfolder="unet")
        unshuffle = base_config.get("unshuffle", DEFAULT_UNSHUFFLE)
        base_levels = base_config.get("encoder_blocks", DEFAULT_ENCODER_BLOCKS)
    else:
        args.width = DEFAULT_WIDTH if args.width is None else args.width
        args.unshuffle = unshuffle = DEFAULT_UNSHUFFLE if args.unshuffle is None else args.unshuffle
        base_levels = DEFAULT_ENCODER_BLOCKS
        if args.unshuffle < 1:
            parser.error(f"--unshuffle must be >= 1, got {args.unshuffle}")
        folded = 3 * args.unshuffle**2
        if args.width < folded:
            parser.error(
                f"--width {args.width} is below the {folded} values that --unshuffle {args.unshuffle} folds into the "
                f"channels of each {args.unshuffle}x{args.unshuffle} block: the first and last convolutions would then "
                f"leave a part of every image the network can neither see nor correct (noise and blur stay there). "
                f"Use --width {folded} or more."
            )
    multiple = InDINet.input_multiple_of(unshuffle, len(args.encoder_blocks or base_levels))
    if args.resolution % multiple:
        parser.error(
            f"--resolution must be a multiple of {multiple} (the network's input multiple), got {args.resolution}"
        )
    if args.eps is None:
        args.eps = get_task(args.task).eps
    return args


def public_args(args) -> dict:
    """The arguments as recorded in train_info.json and the tracker: without the Hub token."""
    return {k: ("<redacted>" if k == "hub_token" and v else v) for k, v in vars(args).items()}


def redact_command(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, item in enumerate(out):
        if item.startswith("--hub_token="):
            out[i] = "--hub_token=<redacted>"
        elif item == "--hub_token" and i + 1 < len(out):
            out[i + 1] = "<redacted>"
    return out


# ------------------------------------------------------------------------------------------------------ checkpoints
def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted save are ignored)."""
    found = [
        p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, state: dict, total_limit: int | None):
    """Saves atomically: write into a temporary folder, then rename, so a kill mid-save leaves no half checkpoint."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f".tmp-{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for stale in output_dir.glob(f".tmp-{CHECKPOINT_PREFIX}*"):  # half-written by an earlier run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def find_resume_checkpoint(args) -> Path | None:
    if not args.resume_from_checkpoint:
        return None
    if args.resume_from_checkpoint != "latest":
        path = Path(args.resume_from_checkpoint)
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
        return path
    checkpoints = list_checkpoints(Path(args.output_dir))
    return checkpoints[-1] if checkpoints else None


def parameters_finite(model) -> bool:
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())


def divergence_reason(
    mean_loss: float, losses: list[torch.Tensor], first_step: int, step: int, accumulation: int
) -> str:
    """Why a run stops, naming the step whose loss first turned non-finite (on this process) when one did."""
    if math.isfinite(mean_loss):
        return f"weights became non-finite (NaN or inf) by step {step}"
    bad = (~torch.isfinite(torch.stack(losses))).nonzero().flatten().tolist()
    where = f"at step {first_step + bad[0] // accumulation}" if bad else f"in steps {first_step}-{step}"
    return f"loss became {mean_loss} {where}"


# -------------------------------------------------------------------------------------------------------- the model
def requested_blocks(args) -> dict:
    """The block counts given on the command line; a flag left out is not in the dict (InDINet's default applies)."""
    blocks = {key: getattr(args, key) for key in BLOCK_KEYS if getattr(args, key) is not None}
    return {key: tuple(v) if isinstance(v, list) else v for key, v in blocks.items()}


def build_model(args) -> InDINet:
    blocks = requested_blocks(args)
    if args.init_from:
        base = InDINet.from_pretrained(args.init_from, subfolder="unet", torch_dtype=torch.float32)
        return grow_network(base, **blocks) if blocks else base
    return InDINet(width=args.width, unshuffle=args.unshuffle, **blocks)


def base_model_record(init_from: str | None) -> dict | None:
    """The train_info.json of the repo a fine-tune starts from (without its loss history), so that the new repo's
    train_info.json, and the model card generated from it, describe every stage of the training. None when there is
    no base or the base has no record (a repo trained elsewhere)."""
    if not init_from:
        return None
    local = Path(init_from) / "train_info.json"
    if local.is_file():
        path = local
    else:
        try:  # a Hub id: the record sits next to the weights (already cached by from_pretrained when online)
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(init_from, "train_info.json"))
        except Exception:  # noqa: BLE001 - no record is not an error: the card then says so
            return None
    record = json.loads(path.read_text())
    record.pop("history", None)
    return record


# Inference-only scheduler settings: chosen for a model by evaluating it (e.g. the defocus model's power spacing), so a
# fine-tune keeps its base's; training never reads them.
INFERENCE_SCHEDULER_KEYS = ("timestep_spacing", "spacing_power")


def build_scheduler(args) -> InDIScheduler:
    inherited = {}
    if args.init_from:
        base = InDIScheduler.load_config(args.init_from, subfolder="scheduler")
        inherited = {key: base[key] for key in INFERENCE_SCHEDULER_KEYS if key in base}
    return InDIScheduler(
        eps=args.eps,
        noise_schedule=args.noise_schedule,
        t_sampling=args.t_sampling,
        t_one_probability=args.t_one_probability,
        **inherited,
    )


def make_lr_lambda(args, progress: dict):
    """Warm-up then cosine to zero; with --max_train_minutes the cosine follows whichever limit is nearer."""

    def lr_lambda(step: int) -> float:
        if step < args.lr_warmup_steps:
            return (step + 1) / args.lr_warmup_steps
        by_steps = (step - args.lr_warmup_steps) / max(1, args.max_train_steps - args.lr_warmup_steps)
        fraction = min(1.0, max(by_steps, progress.get("time_fraction", 0.0)))
        return 0.5 * (1.0 + math.cos(math.pi * fraction))

    return lr_lambda


def load_training_images(args, upscale_factor: int):
    if args.paired_data_dir:
        return load_paired_folder(args.paired_data_dir, args.resolution, upscale_factor)
    if args.dataset_name:
        return load_hf_dataset(
            args.dataset_name, args.dataset_config_name, args.dataset_split, args.image_column, args.resolution
        )
    return load_clean_folder(args.train_data_dir, args.resolution)


def jpeg_in_workers(args) -> bool:
    """Synthetic JPEG degradation: done with PIL by the DataLoader workers, on the CPU."""
    return args.task == "jpeg" and not args.paired_data_dir


def decoded_bytes(images: list) -> int:
    return sum(array.nbytes for item in images for array in (item if isinstance(item, tuple) else (item,)))


def choose_crop_sampler(args, images: list, device: torch.device) -> tuple[str, str]:
    """("device" or "workers", why) for --crop_sampler."""
    if args.crop_sampler != "auto":
        return args.crop_sampler, f"--crop_sampler {args.crop_sampler}"
    if jpeg_in_workers(args):
        return "workers", "the jpeg task compresses crops with PIL in the DataLoader workers"
    need = decoded_bytes(images)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        limit = DEVICE_CROP_MEMORY_FRACTION * free
        budget = f"{DEVICE_CROP_MEMORY_FRACTION:.0%} of the device's {free / 2**30:.1f} GiB free memory"
    else:
        limit, budget = CPU_CROP_MEMORY_BYTES, f"the {CPU_CROP_MEMORY_BYTES / 2**30:.1f} GiB limit on {device.type}"
    if need > limit:
        return "workers", f"the decoded images take {need / 2**30:.2f} GiB, more than {budget}"
    return "device", f"the decoded images take {need / 2**30:.2f} GiB, within {budget}"


def batch_stream(args, images: list, device: torch.device, seed: int, rank: int):
    """(batches, sampler, why): the one place that decides how training batches are made.

    Batches are dicts of uint8 (B, 3, R, R) tensors, "clean" and maybe "degraded". ``sampler`` is "device" (crops
    cut on ``device`` by DeviceCropSampler), "workers" (DataLoader workers running RandomCropStream) or "synthetic"
    (--synthetic_data: one fixed batch kept on the device). ``(seed, rank)`` seed the crop stream.
    """
    if args.synthetic_data:
        fixed = torch.randint(
            0,
            256,
            (args.train_batch_size, 3, args.resolution, args.resolution),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(args.seed),
        ).to(device)
        return itertools.repeat({"clean": fixed}), "synthetic", "--synthetic_data"
    sampler, why = choose_crop_sampler(args, images, device)
    # Either way every process draws its own crop stream (seeded by rank): no distributed sampler, and the loader
    # is not passed to accelerator.prepare, which would have the main process fetch and dispatch every batch.
    if sampler == "device":
        crops = DeviceCropSampler(images, args.resolution, device, seed, rank)
        return crops.batches(args.train_batch_size), sampler, why
    loader = DataLoader(
        RandomCropStream(images, args.resolution, seed, rank, jpeg_in_workers(args), args.degradation_mix),
        batch_size=args.train_batch_size,
        num_workers=args.dataloader_num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.dataloader_num_workers > 0,
    )
    return iter(loader), sampler, why


LOSSES = ("l1", "l2", "psnr", "nmse")
# A floor under each image's MSE for the `psnr` and `nmse` losses (60 dB): an image already restored that well (psnr),
# or degraded that little (nmse), stops pulling the weights (their gradients grow as 1 / MSE).
LOSS_MSE_FLOOR = 1e-6


def per_image_mse(error: torch.Tensor) -> torch.Tensor:
    # not indi_pipeline.metrics.psnr: that one runs without gradients and has no floor
    return error.square().flatten(1).mean(dim=1)


def clean_prediction_loss(error: torch.Tensor, kind: str, input_error: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of ``error`` = prediction - clean, (N, C, H, W), as one scalar (see ``--loss``);
    ``input_error`` = degraded - clean, which `nmse` divides by."""
    if kind == "l1":
        return error.abs().mean()
    if kind == "l2":
        return error.square().mean()
    if kind == "psnr":
        return (10.0 / math.log(10.0)) * torch.log(per_image_mse(error) + LOSS_MSE_FLOOR).mean()
    if kind == "nmse":
        if input_error is None:
            raise ValueError("the nmse loss needs the degraded input's error")
        return (per_image_mse(error) / (per_image_mse(input_error) + LOSS_MSE_FLOOR)).mean()
    raise ValueError(f"unknown loss {kind!r}; choose from {sorted(LOSSES)}")


def training_input(batch: dict, degrader, scheduler, generator, device) -> tuple[torch.Tensor, ...]:
    """(clean, degraded, x_t, t) of one training batch: uint8 crops to [0, 1], degraded (unless the batch holds real
    pairs), a time t ~ p(t) per sample and x_t on InDI's path. Launches device work only (no read back from the device)."""
    clean = batch["clean"].to(device, non_blocking=True).float() / 255.0
    if "degraded" in batch:
        degraded = batch["degraded"].to(device, non_blocking=True).float() / 255.0
    else:
        degraded = degrader(clean)
    t = scheduler.sample_t(clean.shape[0], generator=generator, device=device)
    noise = torch.randn(clean.shape, generator=generator, device=device) if scheduler.config.eps > 0 else None
    return clean, degraded, scheduler.forward_sample(clean, degraded, t, noise), t


def validation_batch(args, device) -> torch.Tensor | None:
    """Up to 4 fixed 256 px centre crops of the validation photos (or None)."""
    if not args.validation_data_dir:
        return None
    crops = []
    for array in load_clean_folder(args.validation_data_dir, 256)[:4]:
        h, w = array.shape[:2]
        top, left = (h - 256) // 2, (w - 256) // 2
        crops.append(torch.from_numpy(array[top : top + 256, left : left + 256].copy()).permute(2, 0, 1))
    return torch.stack(crops).to(device).float() / 255.0


@torch.no_grad()
def validate(args, model, scheduler, degrader, clean, upscale_factor, step, accelerator) -> dict:
    pipe = InDIPipeline(unet=model, scheduler=scheduler, upscale_factor=upscale_factor, task=args.task)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device=clean.device).manual_seed(1234)
    degraded = degrader(clean, generator)
    pipe_input = pipeline_input(clean, degraded, upscale_factor)
    results = {"psnr_degraded": psnr(degraded.clamp(0, 1), clean).mean().item()}
    for steps in sorted({1, args.validation_inference_steps}):
        restored = pipe(
            pipe_input, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt"
        ).images
        results[f"psnr_{steps}_steps"] = psnr(restored.to(clean.device), clean).mean().item()
        if steps > 1:
            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    grid = torch.cat([degraded.clamp(0, 1), restored.to(clean.device), clean], dim=3)
                    tracker.writer.add_images("validation/degraded_restored_clean", grid.cpu(), step)
    return results


# ------------------------------------------------------------------------------------------------------------- main
def training_on_cpu() -> bool:
    """Whether accelerate will train on the CPU (no CUDA GPU, or ACCELERATE_USE_CPU / `accelerate launch --cpu`)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()


def resolve_mixed_precision(choice: str | None) -> str:
    """--mixed_precision as accelerate takes it: None follows accelerate's config (which `accelerate launch` passes
    as ACCELERATE_MIXED_PRECISION), else "auto"; "auto" is bf16 where the device computes it natively, else "no"."""
    if choice is None:
        choice = os.environ.get("ACCELERATE_MIXED_PRECISION") or "auto"
    if choice != "auto":
        return choice
    return "bf16" if resolve_dtype("auto", "cpu" if training_on_cpu() else "cuda") is not None else "no"


def main(argv=None):
    args = parse_args(argv)
    task = get_task(args.task)
    output_dir = Path(args.output_dir)
    args.mixed_precision = resolve_mixed_precision(args.mixed_precision)
    if args.channels_last is None:
        # Measured on a 2-core AVX-512 BF16 CPU (docs/performance.md): bf16 convolutions in channels_last train ~1.8x
        # faster than fp32, contiguous ones ~1.5x.
        args.channels_last = args.mixed_precision == "bf16" and training_on_cpu()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    logger.info(
        f"world size {accelerator.num_processes}, device {accelerator.device}, mixed precision "
        f"{accelerator.mixed_precision}, channels_last {args.channels_last}"
    )
    if accelerator.device.type == "cpu":
        # Each step's activations and gradients are mapped and zeroed afresh by the kernel otherwise (~10 % of a CPU
        # step here).
        logger.info(reuse_freed_memory())
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    images = []
    if not args.synthetic_data:
        try:
            images = load_training_images(args, task.upscale_factor)
        except DataError as error:
            accelerator.print(f"error: {error}")
            raise SystemExit(2) from None

    model = build_model(args)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scheduler = build_scheduler(args)
    ema = None
    if args.use_ema:
        ema = EMAModel(model.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, power=2 / 3, foreach=True)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
    )
    progress_state = {"time_fraction": 0.0}
    # Stepped by hand once per optimizer step (accelerate's wrapper would step it once per process).
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_lr_lambda(args, progress_state))
    model, optimizer = accelerator.prepare(model, optimizer)
    # The compiled module shares `model`'s parameters and is used for the training forward only: accumulation,
    # clipping, EMA, validation and saving keep the plain module, so no compile wrapper reaches a saved repo.
    forward_model = model
    if args.compile:
        use_compile_cache()
        forward_model = torch.compile(model, dynamic=False)
    accelerator.register_for_checkpointing(lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    degrader = DeviceDegrader(
        args.task, accelerator.device, seed=args.seed + 7919 * accelerator.process_index, mix=args.degradation_mix
    )
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed + 104729 * accelerator.process_index)

    global_step, elapsed_before, resumed_from = 0, 0.0, None
    checkpoint = find_resume_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        global_step, elapsed_before = state["global_step"], state["elapsed_seconds"]
        adam_steps = (
            [s["step"] for s in optimizer.optimizer.state.values() if "step" in s]
            if hasattr(optimizer, "optimizer")
            else []
        )
        resumed_from = {
            "checkpoint": checkpoint.name,
            "global_step": global_step,
            "optimizer_step": int(float(adam_steps[0])) if adam_steps else 0,
        }
        logger.info(
            f"resumed from {checkpoint} at step {global_step} (optimizer step {resumed_from['optimizer_step']})"
        )
        degrader.reseed(args.seed + global_step + 7919 * accelerator.process_index)
        generator.manual_seed(args.seed + global_step + 104729 * accelerator.process_index)
    elif args.resume_from_checkpoint:
        logger.info(f"no checkpoint in {output_dir}; starting a new run")

    if accelerator.is_main_process and args.report_to != "none":
        tracker_config = {
            k: (str(v) if isinstance(v, (list, tuple)) or v is None else v) for k, v in public_args(args).items()
        }
        accelerator.init_trackers("indi", config=tracker_config)
    validation_clean = validation_batch(args, accelerator.device) if accelerator.is_main_process else None

    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        f"task {args.task}: {len(images)} training images, batch {total_batch}, eps {args.eps}, "
        f"t_sampling {args.t_sampling}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
    )
    # Seeded by the step like the degrader: a resumed run draws fresh crops, not a replay of the run's first batches.
    data_iter, crop_sampler, crop_sampler_why = batch_stream(
        args, images, accelerator.device, args.seed + global_step, accelerator.process_index
    )
    logger.info(f"crop sampler: {crop_sampler} ({crop_sampler_why})")
    progress_bar = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    start_time = time.perf_counter()
    # Per-batch losses since the last log, kept on the device: read (a sync) only when logging or checkpointing.
    window_start, window_images, window_losses, window_first_step = start_time, 0, [], global_step + 1
    history, stop_reason, diverged = [], "max_train_steps", False
    model.train()

    while global_step < args.max_train_steps:
        clean, degraded, x_t, t = training_input(next(data_iter), degrader, scheduler, generator, accelerator.device)
        if args.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)

        with accelerator.accumulate(model):
            with accelerator.autocast():
                prediction = forward_model(x_t, scheduler.t_to_timestep(t)).sample
            error = prediction.float() - clean
            loss = clean_prediction_loss(error, args.loss, degraded - clean if args.loss == "nmse" else None)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        window_losses.append(loss.detach())
        window_images += clean.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        lr_scheduler.step()
        if ema is not None:
            ema.step(model.parameters())
        global_step += 1
        progress_bar.update(1)

        elapsed = elapsed_before + time.perf_counter() - start_time
        time_up = False
        if args.max_train_minutes and global_step % TIME_SYNC_STEPS == 0:
            # Rank 0's clock decides, so all processes follow the same LR and stop at the same step. Only every
            # TIME_SYNC_STEPS steps: a broadcast is a device sync that would stall the GPU's queue every step.
            elapsed = broadcast(torch.tensor([elapsed], device=accelerator.device), from_process=0).item()
            progress_state["time_fraction"] = elapsed / (60.0 * args.max_train_minutes)
            time_up = elapsed >= 60.0 * args.max_train_minutes

        checkpoint_due = global_step % args.checkpointing_steps == 0 or time_up
        log_due = global_step % args.logging_steps == 0 or global_step == args.max_train_steps
        if log_due or checkpoint_due:
            # Checked before every checkpoint too, not only when logging: the update of a step whose loss is NaN
            # makes the weights NaN, and a checkpoint must never hold them (nor may the final model repo).
            mean_loss = accelerator.reduce(torch.stack(window_losses).mean(), reduction="mean").item()
            if not math.isfinite(mean_loss) or (checkpoint_due and not parameters_finite(model)):
                stop_reason = divergence_reason(
                    mean_loss, window_losses, window_first_step, global_step, args.gradient_accumulation_steps
                )
                checkpoints = list_checkpoints(output_dir)
                accelerator.print(
                    f"error: {stop_reason}; stopping without saving the model. The last good checkpoint is "
                    f"{checkpoints[-1] if checkpoints else 'none (no checkpoint was written yet)'}."
                )
                diverged = True
                break
        if log_due:
            now = time.perf_counter()
            images_per_second = window_images / (now - window_start)
            logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0], "images_per_second": images_per_second}
            progress_bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images_per_second:.0f}")
            accelerator.log(logs, step=global_step)
            history.append({"step": global_step, "elapsed_s": round(elapsed, 1), **logs})
            window_start, window_images, window_losses, window_first_step = now, 0, [], global_step + 1

        if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
            if validation_clean is not None:
                model.eval()
                unwrapped = accelerator.unwrap_model(model)
                if ema is not None:
                    ema.store(unwrapped.parameters())
                    ema.copy_to(unwrapped.parameters())
                results = validate(
                    args,
                    unwrapped,
                    scheduler,
                    degrader.fixed,
                    validation_clean,
                    task.upscale_factor,
                    global_step,
                    accelerator,
                )
                if ema is not None:
                    ema.restore(unwrapped.parameters())
                model.train()
                accelerator.log({f"validation/{k}": v for k, v in results.items()}, step=global_step)
                logger.info(f"step {global_step} validation: " + ", ".join(f"{k} {v:.2f}" for k, v in results.items()))
                history.append({"step": global_step, "validation": results})

        if checkpoint_due:
            state = {"global_step": global_step, "elapsed_seconds": elapsed}
            save_checkpoint(accelerator, output_dir, global_step, state, args.checkpoints_total_limit)
        if time_up:
            stop_reason = f"max_train_minutes={args.max_train_minutes}"
            break

    progress_bar.close()
    accelerator.wait_for_everyone()
    finished = not diverged
    if accelerator.is_main_process and finished:
        save_model_repo(args, accelerator, model, ema, scheduler, task, output_dir)
    if accelerator.is_main_process:
        wall = elapsed_before + time.perf_counter() - start_time
        throughput = [h["images_per_second"] for h in history if "images_per_second" in h]
        info = {
            "task": args.task,
            "world_size": accelerator.num_processes,
            "device": torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else f"CPU ({cpu_model()}, {threads_text(torch.get_num_threads())})",
            "mixed_precision": accelerator.mixed_precision,
            "crop_sampler": crop_sampler,
            "crop_sampler_reason": crop_sampler_why,
            "global_step": global_step,
            "stop_reason": stop_reason,
            "wall_seconds": round(wall, 1),
            "images_per_second_median": sorted(throughput)[len(throughput) // 2] if throughput else None,
            "resumed_from": resumed_from,
            "init_from_train_info": base_model_record(args.init_from),
            "command": " ".join(
                redact_command(["python", "-m", "train.train_indi", *(sys.argv[1:] if argv is None else argv)])
            ),
            # Set by zoo/train_zoo.sh and gpu/gpu_session.sh: the command that started this run, and how many
            # training runs shared the device with it (a share of a GPU trains fewer images/s than the whole).
            "launched_by": os.environ.get(LAUNCHED_BY_ENV),
            "concurrent_runs": int(os.environ.get(CONCURRENT_RUNS_ENV) or 1),
            "args": public_args(args),
            "history": history,
        }
        # A diverged run leaves the model already in output_dir alone, and so the train_info.json that describes it.
        info_name = "train_info.json" if finished else "train_info_diverged.json"
        (output_dir / info_name).write_text(json.dumps(info, indent=2))
        if args.push_to_hub and finished:
            push_to_hub(output_dir, args.hub_model_id, args.hub_token)
    accelerator.end_training()
    if not finished:
        raise SystemExit(3)


def save_model_repo(args, accelerator, model, ema, scheduler, task, output_dir: Path):
    """The final repo: model_index.json, scheduler/, unet/ (EMA weights, fp16 safetensors)."""
    unwrapped = accelerator.unwrap_model(model)
    final = InDINet.from_config(unwrapped.config)
    final.load_state_dict(unwrapped.state_dict())
    if ema is not None:
        ema.copy_to(final.parameters())
    # .half(), not .to(torch.float16): diffusers 0.42's ModelMixin.to warns on any dtype cast ("modules that should
    # be kept in float32: []") even when there are none.
    pipe = InDIPipeline(unet=final.half(), scheduler=scheduler, upscale_factor=task.upscale_factor, task=args.task)
    pipe.save_pretrained(output_dir, safe_serialization=True)
    logger.info(f"saved the model repo to {output_dir}")


def push_to_hub(folder: Path, repo_id: str, token: str | None):
    """Uploads the repo folder with huggingface_hub (needs network and a token)."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True, token=token)
    upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        token=token,
        ignore_patterns=[f"{CHECKPOINT_PREFIX}*", f".tmp-{CHECKPOINT_PREFIX}*", "logs/*"],
    )


if __name__ == "__main__":
    main()
