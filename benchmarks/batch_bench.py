#!/usr/bin/env python
"""Training-batch micro-benchmark: batches/s of train_indi's whole batch path per task (device crops, degradation,
t and x_t; no network), and on a GPU a check that the path never makes the CPU wait for the device.

The check runs the batches under ``torch.cuda.set_sync_debug_mode("error")``: any read of a device value, or a
blocking copy, raises. A step that waits drains the GPU's queue, and the GPU then idles while the CPU prepares the
next kernels. On the CPU the check does not apply (tests/train/test_device_degradation.py covers what it can there).

    python -m benchmarks.batch_bench --train_data_dir data/photos/train [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import synchronize
from indi_pipeline.tasks import get_task
from train import train_indi
from train.device_crops import DeviceCropSampler
from train.device_degradation import KERNEL_BANK_SIZE, DeviceDegrader

TASKS = ("denoise", "sr4", "motion_deblur", "defocus_deblur")  # jpeg is compressed by PIL in the DataLoader workers


def batch_path(
    train_args, images: list, device: torch.device, batch_size: int, kernel_bank_size: int = KERNEL_BANK_SIZE
):
    """A no-argument function making one training batch exactly as train_indi does with ``train_args``."""
    crops = DeviceCropSampler(images, train_args.resolution, device, seed=0)
    degrader = DeviceDegrader(train_args.task, device, seed=0, kernel_bank_size=kernel_bank_size)
    scheduler = train_indi.build_scheduler(train_args)
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda: train_indi.training_input(crops.sample(batch_size), degrader, scheduler, generator, device)


def sync_check(make_batch, device: torch.device, batches: int) -> str:
    """Returns "none" when ``batches`` batches ran under CUDA's sync debug mode "error", else what waited."""
    if device.type != "cuda":
        return "not checked (no CUDA device)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(batches):
            make_batch()
        return "none"
    except RuntimeError as error:
        return f"waits: {str(error).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_data_dir", required=True)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--kernel_bank_size", type=int, default=KERNEL_BANK_SIZE, help="Blur kernels drawn up front.")
    parser.add_argument("--json", default=None, help="Also write the result here.")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows, images = {}, None
    for task in args.tasks:
        train_args = train_indi.parse_args(
            [
                "--task",
                task,
                "--train_data_dir",
                args.train_data_dir,
                "--output_dir",
                tempfile.gettempdir(),
                "--resolution",
                str(args.resolution),
            ]
        )
        if images is None:  # clean photos: one decoded set serves every task (upscale_factor matters for pairs only)
            images = train_indi.load_training_images(train_args, upscale_factor=get_task(task).upscale_factor)
        make_batch = batch_path(train_args, images, device, args.batch_size, args.kernel_bank_size)
        make_batch()  # warm-up: allocations, kernel choice
        synchronize(device)
        waits = sync_check(make_batch, device, batches=3)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.batches):
            make_batch()
        synchronize(device)
        seconds = time.perf_counter() - start
        rows[task] = {
            "images_per_s": args.batches * args.batch_size / seconds,
            "ms_per_batch": 1e3 * seconds / args.batches,
            "device_waits": waits,
        }
        print(
            f"{task:>15}: {rows[task]['images_per_s']:9.0f} images/s, {rows[task]['ms_per_batch']:7.2f} ms per "
            f"batch of {args.batch_size} x {args.resolution}^2; device waits: {waits}",
            flush=True,
        )
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        **vars(args),
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
