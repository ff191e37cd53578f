#!/usr/bin/env python
"""What the deblurring floors ask of the validation photos: non-blind deconvolution told the truth.

Degrades each photo exactly as `train/eval_indi.py` does (same crops, same seeds), then restores it with a
regularised inverse filter that knows the true blur kernel, ``X = conj(K) Y / (|K|^2 + lambda |L|^2)`` (L the
Laplacian), with the best lambda for that photo picked by looking at the clean image. No blind method sees the kernel or
the clean image, so this is an upper reference for linear methods, not a baseline a model could be run against;
networks can beat it on motion blur, where a linear filter cannot undo the kernel's spectral zeros.

With ``--model`` it also restores every crop with that InDI model at 1 step (as `eval_indi.py`'s 1-step row) and
tabulates both gains by blur size (motion: the trajectory's extent in px; defocus: the disk radius): where the model
falls short of what the kernel allows.

    python -m research.oracle_deconvolution --task defocus_deblur --data_dir data/photos/val --crop 256
    python -m research.oracle_deconvolution --task motion_deblur --data_dir data/photos/val --crop 256 --grid 2 \
        --model model_cards/indi-motion_deblur
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from indi_pipeline.degradations import (
    BLUR_NOISE_MAX,
    DEFOCUS_RADIUS_RANGE,
    MOTION_LENGTH_RANGE,
    _blur,
    _extent,
    _noise_like,
    _noise_sigmas,
    _uniform,
    degradation_generator,
    degrade,
    disk_kernels,
    motion_kernels,
)
from indi_pipeline.metrics import psnr
from train.eval_indi import load_clean_images

LAMBDAS = [10.0**e for e in np.arange(-5.0, 1.51, 0.25)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Oracle (true-kernel) deconvolution on the evaluation photos.")
    parser.add_argument("--task", required=True, choices=["motion_deblur", "defocus_deblur"], help="Blur task.")
    parser.add_argument("--data_dir", required=True, help="Folder of clean images (as for eval_indi.py).")
    parser.add_argument("--crop", type=int, default=256, help="Crop size (as for eval_indi.py).")
    parser.add_argument("--grid", type=int, default=1, help="grid x grid crops per photo (as for eval_indi.py).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the degradations (as for eval_indi.py).")
    parser.add_argument("--model", default=None, help="Also restore with this InDI model repo at 1 step.")
    parser.add_argument("--bins", type=int, default=3, help="Blur-size bins of the --model table.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--json", default=None, help="Also write the per-photo results here.")
    return parser.parse_args(argv)


def blur_with_known_kernel(task: str, clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(blurred, kernel, blur size): the task's degradation with the generator draws in the library's order (kernel,
    sigma, noise), so the blurred image is the one `degrade` makes (checked below); the size is the disk radius or the
    shake trajectory's extent, in px."""
    generator = degradation_generator(seed)
    if task == "defocus_deblur":
        radius = _uniform(1, DEFOCUS_RADIUS_RANGE, generator)
        kernel = disk_kernels(radius, size=2 * int(np.ceil(DEFOCUS_RADIUS_RANGE[1])) + 1)
        size = float(radius[0])
    else:
        kernel, trajectory = motion_kernels(1, generator=generator, return_trajectories=True)
        size = float(_extent(trajectory)[0])
    sigma = _noise_sigmas(None, "noise_sigma", BLUR_NOISE_MAX, "noise_max", 1, generator)
    blurred = _blur(clean, kernel)
    blurred = blurred + _noise_like(blurred, sigma, generator)
    if not torch.equal(blurred, degrade(task, clean, generator=degradation_generator(seed))):
        raise RuntimeError("the degradation's random draws changed order; update blur_with_known_kernel")
    return blurred, kernel[0], size


def regularised_inverse(blurred: torch.Tensor, kernel: torch.Tensor, lam: float, pad: int = 48) -> torch.Tensor:
    """FFT deconvolution of a reflect-padded image (the blur itself used reflect padding)."""
    height, width = blurred.shape[-2:]
    padded = F.pad(blurred, (pad, pad, pad, pad), mode="reflect").double()
    size = padded.shape[-2:]
    k = kernel.shape[-1]
    kernel_image = torch.zeros(size, dtype=torch.float64)
    kernel_image[:k, :k] = kernel.double()
    kernel_spectrum = torch.fft.fft2(torch.roll(kernel_image, (-(k // 2), -(k // 2)), (0, 1)))
    laplacian = torch.zeros(size, dtype=torch.float64)
    laplacian[0, 0], laplacian[0, 1], laplacian[1, 0], laplacian[0, -1], laplacian[-1, 0] = 4, -1, -1, -1, -1
    penalty = torch.fft.fft2(laplacian).abs() ** 2
    spectrum = kernel_spectrum.conj() * torch.fft.fft2(padded) / (kernel_spectrum.abs() ** 2 + lam * penalty)
    return torch.fft.ifft2(spectrum).real[..., pad : pad + height, pad : pad + width].float()


def by_blur_size(rows: list[dict], task: str, bins: int) -> list[dict]:
    """Mean input PSNR and oracle and model gains in ``bins`` equal bins of the task's blur-size range."""
    low, high = DEFOCUS_RADIUS_RANGE if task == "defocus_deblur" else MOTION_LENGTH_RANGE
    edges = np.linspace(low, high, bins + 1)
    table = []
    for k, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == bins - 1
        members = [r for r in rows if start <= r["blur_size"] < stop or (last and r["blur_size"] >= stop)]
        if not members:
            continue
        table.append(
            {
                "blur_size": [float(start), float(stop)],
                "crops": len(members),
                "input_psnr": float(np.mean([r["input_psnr"] for r in members])),
                "oracle_gain_db": float(np.mean([r["oracle_psnr"] - r["input_psnr"] for r in members])),
                "model_gain_db": float(np.mean([r["model_psnr"] - r["input_psnr"] for r in members])),
            }
        )
    return table


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = None
    if args.model:
        from indi_pipeline import InDIPipeline
        from train.eval_indi import restore

        pipe = InDIPipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
    rows = []
    for index, (name, clean) in enumerate(load_clean_images(args.data_dir, args.crop, 4, 0, args.grid)):
        blurred, kernel, size = blur_with_known_kernel(args.task, clean, args.seed + index)
        best_psnr, best_lambda = max(
            (psnr(regularised_inverse(blurred, kernel, lam).clamp(0, 1), clean).item(), lam) for lam in LAMBDAS
        )
        rows.append(
            {
                "image": name,
                "blur_size": size,
                "input_psnr": psnr(blurred, clean).item(),
                "oracle_psnr": best_psnr,
                "lambda": best_lambda,
            }
        )
        line = (
            f"{name}: blur size {size:.1f} px, input {rows[-1]['input_psnr']:.2f} dB, "
            f"oracle deconvolution {best_psnr:.2f} dB"
        )
        if pipe is not None:
            # as eval_indi.py's 1-step row: restored with the crop's own seed and the model's eps
            restored, _ = restore(pipe, blurred, 1, 1.0, args.seed + index)
            rows[-1]["model_psnr"] = psnr(restored, clean).item()
            line += f", model 1 step {rows[-1]['model_psnr']:.2f} dB"
        print(line, flush=True)
    result = {
        "task": args.task,
        "crop": args.crop,
        "grid": args.grid,
        "seed": args.seed,
        "data_dir": str(args.data_dir),
        "images": rows,
        "input_psnr": float(np.mean([r["input_psnr"] for r in rows])),
        "oracle_psnr": float(np.mean([r["oracle_psnr"] for r in rows])),
    }
    result["gain_db"] = result["oracle_psnr"] - result["input_psnr"]
    print(
        f"mean: input {result['input_psnr']:.2f} dB, oracle deconvolution {result['oracle_psnr']:.2f} dB "
        f"({result['gain_db']:+.2f} dB)"
    )
    if pipe is not None:
        result["model"] = args.model
        result["model_psnr"] = float(np.mean([r["model_psnr"] for r in rows]))
        result["by_blur_size"] = by_blur_size(rows, args.task, args.bins)
        print(f"\n| blur size (px) | crops | input PSNR | oracle gain | {args.model} gain, 1 step |")
        print("|---|---:|---:|---:|---:|")
        for row in result["by_blur_size"]:
            print(
                f"| {row['blur_size'][0]:.1f}-{row['blur_size'][1]:.1f} | {row['crops']} | {row['input_psnr']:.2f} | "
                f"{row['oracle_gain_db']:+.2f} | {row['model_gain_db']:+.2f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
