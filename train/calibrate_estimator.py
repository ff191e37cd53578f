"""Calibrate a repo's start estimator on held-out photos: when is an image clean, and where should its walk start?

Three measurements, each written into ``estimator/config.json`` (and its figures into ``estimator/train_info.json``):

* ``nothing_below``: the 95th percentile of the estimates on whole clean photos (about 1 in 20 clean photos still
  gets a short walk from a small t);
* ``start_curve``: for inputs the task meets in photos, at several strengths of its own kind of degradation, the
  fixed start that restores best at 1 step (PSNR, a sweep that includes "leave it as it is"), against the mean
  estimate there; made non-decreasing. A model that over-smooths does best started below the t its estimator reads,
  and one that cannot improve a mild input does best left alone: the curve turns what the estimator reads into what
  the model needs. The strengths (`levels`) are each task's own kind of degradation (design.md §4), the real thing
  rather than the path's interpolations: white Gaussian noise of t * sigma_max, files saved at JPEG qualities
  10-95, disk blurs of radius 0.5-6 px, camera shake of 2-25 px. Off-definition inputs (camera noise, noise then
  JPEG, Gaussian blur) are left to the benchmark, so that it measures how the calibration carries over;
* ``quality_curve`` (jpeg): the same sweep read by quality, so that a JPEG file's tables
  (`indi_pipeline.jpeg_quality`) give a start without looking at the pixels.

The photos the blind benchmark scores (the first ``CALIBRATION_SKIPS`` of the sorted held-out folder) are left out,
so its figures are not measured on the calibration's own photos.

    python -m train.calibrate_estimator --repo model_cards/indi-denoise --val_data_dir data/shared_photos/val
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from indi_pipeline import InDIPipeline
from indi_pipeline.degradations import defocus_blur, jpeg_compress, motion_blur
from indi_pipeline.estimation import InDIStartEstimator
from indi_pipeline.machine import cpu_model, threads_text
from indi_pipeline.metrics import psnr
from indi_pipeline.tasks import get_task
from train.data import load_clean_folder
from train.train_estimator import save_estimator

CALIBRATION_SKIPS = 8
CLEAN_QUANTILE = 0.95
CROP = 256
PATH_LEVELS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
RADII = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)
LENGTHS = (2.0, 4.0, 6.0, 9.0, 12.0, 16.0, 20.0, 25.0)
STARTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)  # the blind benchmark's sweep, and 0


def calibration_photos(val_images: list[np.ndarray], max_photos: int | None = None) -> list[np.ndarray]:
    return (val_images[CALIBRATION_SKIPS:] or val_images)[:max_photos]


def centre_crops(images: list[np.ndarray], size: int = CROP) -> torch.Tensor:
    crops = []
    for image in images:
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image[top : top + size, left : left + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)


def calibrate_nothing_below(estimator: InDIStartEstimator, val_images: list[np.ndarray]) -> dict:
    """Sets ``nothing_below`` to the 95th percentile of the estimates on clean photos, read both whole and as
    ``CROP`` px centre crops (a crop pools fewer regions, so its estimates spread more), whichever is higher; returns
    the figures."""
    photos = calibration_photos(val_images)

    whole = np.array(  # one call per photo: they differ in size
        [estimator.estimate(torch.from_numpy(np.array(p)).permute(2, 0, 1)[None].float() / 255).item() for p in photos]
    )
    crops = estimator.estimate(centre_crops(photos)).numpy()
    threshold = float(max(np.quantile(whole, CLEAN_QUANTILE), np.quantile(crops, CLEAN_QUANTILE)))
    estimator.register_to_config(nothing_below=round(threshold, 4))
    return {
        "photos": len(photos),
        "clean_estimate_median": float(np.median(whole)),
        "clean_estimate_max": float(whole.max()),
        "crop_estimate_p95": float(np.quantile(crops, CLEAN_QUANTILE)),
        "whole_estimate_p95": float(np.quantile(whole, CLEAN_QUANTILE)),
        "nothing_below": round(threshold, 4),
        "clean_photos_walked": float((whole >= threshold).mean()),
        "clean_crops_walked": float((crops >= threshold).mean()),
    }


def best_start(pipe: InDIPipeline, degraded: torch.Tensor, clean: torch.Tensor, seed: int) -> tuple[float, dict]:
    """The fixed start (0 = unchanged) with the best mean PSNR at 1 step over the crops, and every start's PSNR."""
    scores = {}
    for start in STARTS:
        if start == 0.0:
            restored = degraded
        else:
            generator = torch.Generator().manual_seed(seed)
            restored = pipe(degraded, num_inference_steps=1, strength=start, generator=generator, output_type="pt")
            restored = restored.images.clamp(0, 1)
        scores[start] = float(psnr((restored * 255).round() / 255, clean).clamp(max=100).mean())
    return max(scores, key=scores.get), scores


def non_decreasing(values: list[float]) -> list[float]:
    """Pool-adjacent-violators: the non-decreasing sequence nearest ``values`` in least squares."""
    blocks = []  # [mean, count]
    for value in values:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (a, n), (b, m) = blocks[-2], blocks.pop()
            blocks[-1] = [(a * n + b * m) / (n + m), n + m]
    return [mean for mean, count in blocks for _ in range(count)]


def levels(task_id: str) -> dict:
    """{level: degrade(clean, generator, rng) -> inputs} of the sweep: see the module docstring."""
    if task_id == "denoise":  # the task's own noise: white Gaussian of t * sigma_max
        sigma_max = get_task("denoise").sigma_max
        return {t: (lambda x, g, rng, t=t: x + t * sigma_max * torch.randn(x.shape, generator=g)) for t in PATH_LEVELS}
    if task_id == "jpeg":
        return {q: (lambda x, g, rng, q=q: jpeg_compress(x, quality=q)) for q in QUALITIES}
    if task_id == "defocus_deblur":
        return {r: (lambda x, g, rng, r=r: defocus_blur(x, radius=r, generator=g)) for r in RADII}
    if task_id == "motion_deblur":
        return {n: (lambda x, g, rng, n=n: motion_blur(x, length_range=(n, n), generator=g)) for n in LENGTHS}
    raise ValueError(f"no calibration levels for task {task_id!r}")


def calibrate_start_curve(
    pipe: InDIPipeline, task_id: str, val_images: list[np.ndarray], seed: int = 0, max_photos: int | None = None
) -> dict:
    """Sets the estimator's ``start_curve`` (and for jpeg its ``quality_curve``) from the best start at each level
    of `levels`; returns the points."""
    clean = centre_crops(calibration_photos(val_images, max_photos))
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    points = []
    for level, degrade in levels(task_id).items():
        degraded = degrade(clean, generator, rng)
        estimates = pipe.estimator.estimate(degraded)
        start, scores = best_start(pipe, degraded, clean, seed)
        points.append(
            {"level": level, "estimate_mean": float(estimates.mean()), "best_start": start,
             "psnr_by_start": {f"{s:g}": v for s, v in scores.items()}}
        )  # fmt: skip
        print(json.dumps({k: v for k, v in points[-1].items() if k != "psnr_by_start"}), flush=True)
    report = {"photos": len(clean), "crop": CROP, "points": points, **fit_curves(pipe.estimator, task_id, points)}
    return report


def fit_curves(estimator: InDIStartEstimator, task_id: str, points: list[dict]) -> dict:
    """The monotone curves through a sweep's points, set on ``estimator``: the start curve by estimate and, for
    jpeg, the quality curve (a lower quality never starts later)."""
    by_estimate = sorted(points, key=lambda p: p["estimate_mean"])
    starts = non_decreasing([p["best_start"] for p in by_estimate])
    curves = {"start_curve": [[round(p["estimate_mean"], 4), round(s, 4)] for p, s in zip(by_estimate, starts)]}
    if task_id == "jpeg":
        by_quality = sorted(points, key=lambda p: -p["level"])  # highest quality first
        starts = non_decreasing([p["best_start"] for p in by_quality])
        curves["quality_curve"] = sorted([[p["level"], round(s, 4)] for p, s in zip(by_quality, starts)])
    estimator.register_to_config(**curves)
    return curves


def calibrate(
    repo: Path,
    val_data_dir: str,
    threads: int = 2,
    curves: bool = True,
    max_photos: int | None = None,
    pooling: dict | None = None,
    command: str | None = None,
) -> dict:
    """All of the module docstring's measurements on the repo's estimator, saved back into ``repo/estimator``."""
    torch.set_num_threads(threads)
    val_images = load_clean_folder(val_data_dir, CROP)
    pipe = InDIPipeline.from_pretrained(repo)
    if pipe.estimator is None:
        raise SystemExit(
            f"error: {repo} has no estimator/ to calibrate (train one with python -m train.train_estimator)"
        )
    pipe.set_progress_bar_config(disable=True)
    pipe.estimator.float().eval()
    if pooling:  # crop, max_crops, pool_quantile: how an image's estimate is pooled, set before measuring
        pipe.estimator.register_to_config(**pooling)
    if curves:  # measured anew below; without, the repo's curves stay
        pipe.estimator.register_to_config(start_curve=None, quality_curve=None)
    task_id = pipe.estimator.config.task
    start = time.perf_counter()
    report = {"nothing_below": calibrate_nothing_below(pipe.estimator, val_images)}
    if curves:
        report["curves"] = calibrate_start_curve(pipe, task_id, val_images, max_photos=max_photos)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    report["machine"] = f"CPU ({cpu_model()}, {threads_text(threads)}), torch {torch.__version__}"
    save_estimator(pipe.estimator, repo / "estimator")
    info_path = repo / "estimator" / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info["calibration"] = report["nothing_below"]
    if curves:  # a threshold-only run keeps the sweep it did not redo
        info["curves"] = {**report["curves"], "wall_seconds": report["wall_seconds"], "machine": report["machine"]}
    commands = info.get("calibration_commands", []) + ([command] if command else [])
    info["calibration_commands"] = commands
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.calibrate_estimator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="model repo with an estimator/ (it is updated in place)")
    parser.add_argument("--val_data_dir", required=True, help="folder of clean held-out photos")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--no_curves", action="store_true", help="only nothing_below (seconds instead of minutes)")
    parser.add_argument(
        "--max_photos", type=int, default=None, help="sweep the curves on at most this many photos (default: all)"
    )
    parser.add_argument("--crop", type=int, default=None, help="set the estimator's pooling crop (px) first")
    parser.add_argument("--max_crops", type=int, default=None, help="set the most crops an estimate pools first")
    parser.add_argument("--pool_quantile", type=float, default=None, help="set the pooling quantile first")
    args = parser.parse_args(argv)
    pooling = {k: getattr(args, k) for k in ("crop", "max_crops", "pool_quantile") if getattr(args, k) is not None}
    command = "python -m train.calibrate_estimator " + " ".join(sys.argv[1:] if argv is None else argv)
    report = calibrate(
        Path(args.repo), args.val_data_dir, args.threads, not args.no_curves, args.max_photos, pooling, command
    )
    curves = report.get("curves", {})
    print(json.dumps({"nothing_below": report["nothing_below"]["nothing_below"], "start_curve": curves.get("start_curve"),
                      "quality_curve": curves.get("quality_curve"), "wall_seconds": report["wall_seconds"]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
