#!/usr/bin/env python
"""Crop micro-benchmark: batches/s of train_indi's batch_stream with --crop_sampler device vs workers.

Times only the making of training batches (no network): each sampler's start-up (worker processes, device upload)
is timed apart, then ``--batches`` batches are drawn and moved to the device as the training loop does.

    python -m benchmarks.crop_bench --train_data_dir data/photos/train [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import synchronize
from train import train_indi


def time_sampler(train_args, images, device: torch.device, batches: int) -> dict:
    start = time.perf_counter()
    stream, sampler, _ = train_indi.batch_stream(train_args, images, device, seed=0, rank=0)
    next(stream)
    synchronize(device)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)["clean"].to(device, non_blocking=True)
    synchronize(device)
    seconds = time.perf_counter() - start
    assert sampler == train_args.crop_sampler, sampler
    return {"images_per_s": batches * train_args.train_batch_size / seconds, "startup_s": startup}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_data_dir", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="Also write the result here.")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    common = [
        "--task",
        "denoise",
        "--train_data_dir",
        args.train_data_dir,
        "--output_dir",
        tempfile.gettempdir(),
        "--train_batch_size",
        str(args.batch_size),
        "--resolution",
        str(args.resolution),
        "--dataloader_num_workers",
        str(args.dataloader_num_workers),
    ]
    images = train_indi.load_training_images(train_indi.parse_args(common), upscale_factor=1)
    rows = {}
    for sampler in ("device", "workers"):
        train_args = train_indi.parse_args([*common, "--crop_sampler", sampler])
        rows[sampler] = time_sampler(train_args, images, device, args.batches)
        print(
            f"{sampler:>8}: {rows[sampler]['images_per_s']:8.0f} images/s (start-up {rows[sampler]['startup_s']:.2f} s)"
        )
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "images": len(images),
        **vars(args),
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
