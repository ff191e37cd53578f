"""Train a task's start estimator (indi_pipeline.estimation) and add it to a model repo as its ``estimator/``.

The samples are the task's own InDI samples x_t = (1 - t) x + t y of clean crops x, with t uniform on [0, 1] and a
share of clean crops (t = 0), labelled with their t. For denoising, the noise is drawn from several families
(white Gaussian, camera shot + read noise, colour- and space-correlated noise, each also followed by a JPEG round
trip) and the label is the RMS of x_t - x over sigma_max: the strength at which the denoiser sees that much noise.

    python -m train.prepare_data --shared_photos ../shared/photos --output_dir data/shared_photos
    python -m train.train_estimator --task denoise --train_data_dir data/shared_photos/train \
        --val_data_dir data/shared_photos/val --repo model_cards/indi-denoise --minutes 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from indi_pipeline.acceleration import dtype_name, resolve_dtype
from indi_pipeline.degradations import degrade, jpeg_compress
from indi_pipeline.estimation import InDIStartEstimator, estimator_loss
from indi_pipeline.machine import cpu_model, threads_text
from indi_pipeline.noise_models import camera_noise, correlated_noise, jpeg_after
from indi_pipeline.tasks import get_task
from train.data import load_clean_folder

ESTIMATED_TASKS = ("denoise", "jpeg", "motion_deblur", "defocus_deblur")
CLEAN_SHARE = 0.15  # crops with t = 0: "nothing to restore" must be learned, not extrapolated
NOISE_FAMILIES = ("gaussian", "camera", "correlated")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.train_estimator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=ESTIMATED_TASKS, help="the task whose path t is read on")
    parser.add_argument("--train_data_dir", required=True, help="folder of clean training photos")
    parser.add_argument("--val_data_dir", default=None, help="folder of clean held-out photos (reports the error)")
    parser.add_argument("--repo", required=True, help="model repo that receives estimator/ (model_index.json too)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (default: 5)")
    parser.add_argument("--max_steps", type=int, default=100000, help="at most this many steps (default: 100000)")
    parser.add_argument("--batch_size", type=int, default=32, help="crops per step (default: 32)")
    parser.add_argument("--crop", type=int, default=64, help="training crop size in px (default: 64)")
    parser.add_argument("--width", type=int, default=16, help="the estimator's first-layer channels (default: 16)")
    parser.add_argument(
        "--scales", type=int, default=1, help="octaves the estimator reads (default: 1; blur needs 3 or more)"
    )
    parser.add_argument(
        "--inference_crop", type=int, default=128, help="crop side an image's estimate pools over (default: 128)"
    )
    parser.add_argument("--max_crops", type=int, default=16, help="most crops per image's estimate (default: 16)")
    parser.add_argument(
        "--pool_quantile",
        type=float,
        default=0.5,
        help="quantile of the crops' estimates that is an image's (default: 0.5, the median; denoise: 0.25)",
    )
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument(
        "--no_curves",
        action="store_true",
        help="calibrate only nothing_below, not the start curves (train.calibrate_estimator; minutes less)",
    )
    return parser.parse_args(argv)


def random_crops(images: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    crops = []
    for index in rng.integers(len(images), size=count):
        image = images[index]
        top = rng.integers(image.shape[0] - size + 1)
        left = rng.integers(image.shape[1] - size + 1)
        crops.append(image[top : top + size, left : left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)


def noisy_samples(
    x: torch.Tensor, t: torch.Tensor, sigma_max: float, generator, rng
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoising samples from the noise families, some JPEG-compressed after; label = RMS(x_t - x) / sigma_max."""
    out = torch.empty_like(x)
    rms = t * sigma_max
    families = rng.integers(len(NOISE_FAMILIES), size=len(x))
    for k, family in enumerate(NOISE_FAMILIES):
        chosen = torch.from_numpy(families == k)
        if not chosen.any():
            continue
        part, level = x[chosen], rms[chosen]
        if family == "gaussian":
            out[chosen] = part + level.view(-1, 1, 1, 1) * torch.randn(part.shape, generator=generator)
        elif family == "camera":
            out[chosen] = camera_noise(part, level, generator)
        else:
            out[chosen] = correlated_noise(part, level, generator)
    compressed = torch.from_numpy(rng.random(len(x)) < 0.4)
    if compressed.any():
        quality = torch.from_numpy(rng.integers(60, 96, size=int(compressed.sum())))
        out[compressed] = jpeg_after(out[compressed], quality)
    label = (out - x).pow(2).mean(dim=(1, 2, 3)).sqrt() / sigma_max
    return out, label.clamp(0, 1)


def training_samples(
    task_id: str, x: torch.Tensor, generator, rng, t: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, label) for a batch of clean crops: t uniform with a clean share, or the given ``t`` for every crop."""
    if t is None:
        t = torch.from_numpy(rng.random(len(x))).float()
        t[torch.from_numpy(rng.random(len(x)) < CLEAN_SHARE)] = 0.0
    else:
        t = torch.full((len(x),), float(t))
    task = get_task(task_id)
    if task_id == "denoise":
        return noisy_samples(x, t, task.sigma_max, generator, rng)
    y = jpeg_compress(x, generator=generator) if task_id == "jpeg" else degrade(task_id, x, generator=generator)
    weight = t.view(-1, 1, 1, 1)
    return (1 - weight) * x + weight * y, t


def validation_error(estimator, task_id: str, images, crop: int, seed: int) -> dict:
    """Mean absolute error of the pooled estimate on held-out crops (fixed draws), overall and for clean crops."""
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    x = random_crops(images, 256, crop, rng)
    x_t, t = training_samples(task_id, x, generator, rng)
    estimator.eval()
    estimate = estimator.estimate(x_t)
    estimator.train()
    error = (estimate - t).abs()
    clean = t == 0
    return {
        "mae": float(error.mean()),
        "mae_clean": float(error[clean].mean()) if clean.any() else None,
        "p90_abs_error": float(error.quantile(0.9)),
        "crops": len(t),
    }


def save_estimator(estimator: InDIStartEstimator, folder: Path) -> None:
    """fp16 safetensors and config.json, without the folder a re-calibrated estimator was read from."""
    estimator.half().save_pretrained(folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("_name_or_path", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng, generator = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
    images = load_clean_folder(args.train_data_dir, args.crop)
    val_images = load_clean_folder(args.val_data_dir, args.crop) if args.val_data_dir else None
    repo = Path(args.repo)
    index_path = repo / "model_index.json"
    if not index_path.is_file():
        raise SystemExit(f"error: {repo} is not a model repo (no model_index.json)")
    estimator = InDIStartEstimator(
        width=args.width,
        task=args.task,
        scales=args.scales,
        crop=args.inference_crop,
        max_crops=args.max_crops,
        pool_quantile=args.pool_quantile,
    ).to(memory_format=torch.channels_last)
    autocast_dtype = resolve_dtype("auto", "cpu")  # bf16 where the CPU has it natively (1.8x faster here)
    optimizer = torch.optim.AdamW(estimator.parameters(), lr=args.learning_rate)
    start, step, losses, history = time.perf_counter(), 0, [], []
    while step < args.max_steps and time.perf_counter() - start < args.minutes * 60:
        x = random_crops(images, args.batch_size, args.crop, rng)
        x_t, t = training_samples(args.task, x, generator, rng)
        x_t = x_t.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = estimator_loss(estimator, x_t, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            history.append(
                {"step": step, "elapsed_s": round(time.perf_counter() - start, 1), "loss": float(np.mean(losses))}
            )
            print(f"step {step}: loss {np.mean(losses):.4f}", flush=True)
            losses = []
    estimator.eval()
    info = {
        "task": args.task,
        "steps": step,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "device": f"CPU ({cpu_model()}, {threads_text(args.threads)})",
        "mixed_precision": dtype_name(autocast_dtype),
        "args": vars(args),
        "history": history,
        "command": "python -m train.train_estimator " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if val_images:
        info["validation"] = validation_error(estimator, args.task, val_images, args.crop, seed=12345)
        print(f"held-out: {json.dumps(info['validation'])}", flush=True)
    save_estimator(estimator, repo / "estimator")
    (repo / "estimator" / "train_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    index = json.loads(index_path.read_text())
    index["estimator"] = ["indi_pipeline.estimation", "InDIStartEstimator"]
    index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {repo / 'estimator'} ({step} steps)")
    if args.val_data_dir:  # when is an image clean, and where should its walk start (the repo's own model)
        from train.calibrate_estimator import calibrate  # it imports this module's samples

        calibrate(repo, args.val_data_dir, args.threads, curves=not args.no_curves)
        print(f"calibrated on {args.val_data_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
