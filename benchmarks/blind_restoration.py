"""Blind restoration: does strength="auto" start each walk where it should, on degradations the models never saw?

For each same-size task whose repo carries an estimator, families of inputs (the task's own degradation and others
it was not trained on, and clean photos) are restored at 1 step and at the task's default steps with

* **auto** (the repo's estimator), **strength 1** (the old default) and, at 1 step, the **oracle**: the best of a
  sweep of fixed strengths, chosen per family with hindsight on mean PSNR;
* for the noise families, the blind CDnCNN-B peer (``../shared/peers``, skipped when absent).

It reports each family's estimate (mean, and its error against the true t where one exists: RMS(y - x) /
sigma_max for noise) and PSNR / LPIPS against the clean crops.

    python -m benchmarks.blind_restoration --data_dir data/shared_photos/val --json docs/measurements/blind/blind.json
"""

from __future__ import annotations

import argparse
import json
import re
import types

import numpy as np
import PIL.Image
import torch

from benchmarks.peers import cdncnn
from benchmarks.timing import write_results
from indi_pipeline import InDIPipeline
from indi_pipeline.acceleration import optimize_for_inference
from indi_pipeline.degradations import blur, defocus_blur, degradation_generator, jpeg_compress, motion_blur
from indi_pipeline.image_io import tensor_to_output
from indi_pipeline.jpeg_quality import ijg_tables
from indi_pipeline.machine import machine_line
from indi_pipeline.metrics import lpips, psnr
from indi_pipeline.noise_models import camera_noise, jpeg_after
from indi_pipeline.tasks import TASKS
from train.eval_indi import load_clean_images

SWEEP = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(np.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = torch.outer(line, line)
    return blur(x, (kernel / kernel.sum()).expand(x.shape[0], -1, -1))


def families(task_id: str) -> dict:
    """{name: (degrade(x, generator) -> y, true t or None)}; true t None = read it off the result (noise)."""
    sigma_max = 50 / 255

    def gaussian(level):
        return lambda x, g: x + level / 255 * torch.randn(x.shape, generator=g)

    if task_id == "denoise":
        out = {f"gaussian {s}/255": (gaussian(s), s / 255 / sigma_max) for s in (5, 10, 15, 25, 35, 50)}
        out["camera noise (shot + read) then JPEG 90*"] = (
            lambda x, g: jpeg_after(camera_noise(x, 8 / 255, g), 90),
            None,
        )
        out["gaussian 15/255 then JPEG 60*"] = (lambda x, g: jpeg_after(gaussian(15)(x, g), 60), None)
    elif task_id == "jpeg":
        out = {
            f"JPEG q{q}" + ("*" if q > 50 else ""): (lambda x, g, q=q: jpeg_compress(x, quality=q), None)
            for q in (10, 30, 50, 70, 90, 95)
        }
        out["JPEG q20 then q80*"] = (lambda x, g: jpeg_compress(jpeg_compress(x, quality=20), quality=80), None)
        out["JPEG q40 then q90*"] = (lambda x, g: jpeg_compress(jpeg_compress(x, quality=40), quality=90), None)
    elif task_id == "defocus_deblur":
        out = {
            "disk r 1-6 (trained)": (lambda x, g: defocus_blur(x, generator=g), None),
            "disk r 0.5-1 (milder)*": (lambda x, g: defocus_blur(x, radius_range=(0.5, 1.0), generator=g), None),
            "gaussian blur sigma 1.5*": (lambda x, g: _gaussian_blur(x, 1.5), None),
        }
    else:
        out = {
            "camera shake 5-25 px (trained)": (lambda x, g: motion_blur(x, generator=g), None),
            "camera shake 2-5 px (milder)*": (lambda x, g: motion_blur(x, length_range=(2.0, 5.0), generator=g), None),
            "gaussian blur sigma 1.5*": (lambda x, g: _gaussian_blur(x, 1.5), None),
        }
    out["clean"] = (lambda x, g: x.clone(), 0.0)
    return out


def last_jpeg_quality(family: str) -> int | None:
    """The quality a JPEG family's files were last saved at (what their tables say), from its name."""
    qualities = re.findall(r"\bq(\d+)", family)
    return int(qualities[-1]) if family.startswith("JPEG") and qualities else None


def as_jpeg_file(y: torch.Tensor, quality: int) -> PIL.Image.Image:
    """The decoded JPEG ``y`` as the pipeline gets a JPEG file: its pixels, with the tables it was saved with."""
    image = tensor_to_output(y, "pil")[0]
    image.info["quantization"] = ijg_tables(quality)
    return image


# PSNR of an unchanged image is infinite: capped here so that a family's mean stays a number (clean photos).
PSNR_CAP_DB = 100.0


def score_8bit(restored: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    restored = (restored.clamp(0, 1) * 255).round() / 255  # scored as the 8-bit image a user gets
    return min(psnr(restored, clean).item(), PSNR_CAP_DB), lpips(restored, clean).item()


def run_task(task_id: str, crops) -> dict:
    repo = TASKS[task_id].local_path
    pipe = optimize_for_inference(InDIPipeline.from_pretrained(repo))
    pipe.set_progress_bar_config(disable=True)
    steps = TASKS[task_id].default_steps
    peer = None
    if task_id == "denoise":
        try:
            peer = cdncnn("cdncnn_b")
        except FileNotFoundError as error:
            print(f"CDnCNN-B skipped: {error}")
    rows = []
    for name, (degrade_fn, true_t) in families(task_id).items():
        scores: dict[str, list] = {}
        estimates, starts, truths = [], [], []
        for index, (_, clean) in enumerate(crops):
            y = degrade_fn(clean, degradation_generator(1000 + index)).float()
            truth = true_t
            if task_id == "denoise" and true_t is None:
                truth = float((y - clean).pow(2).mean().sqrt() / (50 / 255))
            truths.append(truth)

            quality = last_jpeg_quality(name) if task_id == "jpeg" else None
            file_input = y if quality is None else as_jpeg_file(y, quality)  # auto reads a JPEG file's tables

            def walk(strength, n, source=file_input, index=index, unchanged=y):
                if strength == 0.0:  # a start of 0 leaves the image as it is
                    return types.SimpleNamespace(images=unchanged)
                generator = torch.Generator().manual_seed(index)
                return pipe(source, num_inference_steps=n, strength=strength, generator=generator, output_type="pt")

            auto_1 = walk("auto", 1)
            estimates.append(auto_1.estimated_t[0])
            starts.append(auto_1.start_t[0])
            if quality is not None:  # which of the two readings restores better, each alone
                pixels_only = walk("auto", 1, source=y)
                scores.setdefault("auto, pixels only, 1 step", []).append(score_8bit(pixels_only.images, clean))
                tables_start = pipe.estimator.start_for_quality(quality)
                scores.setdefault("auto, tables only, 1 step", []).append(
                    score_8bit(walk(tables_start, 1).images, clean)
                )
            scores.setdefault("input", []).append(score_8bit(y, clean))
            scores.setdefault("auto, 1 step", []).append(score_8bit(auto_1.images, clean))
            scores.setdefault(f"auto, {steps} steps", []).append(score_8bit(walk("auto", steps).images, clean))
            scores.setdefault(f"strength 1, {steps} steps", []).append(score_8bit(walk(1.0, steps).images, clean))
            for strength in SWEEP:
                scores.setdefault(f"strength {strength:g}, 1 step", []).append(
                    score_8bit(walk(strength, 1).images, clean)
                )
            if peer is not None:
                scores.setdefault("CDnCNN-B", []).append(score_8bit(peer(y), clean))
        means = {k: (float(np.mean([s[0] for s in v])), float(np.mean([s[1] for s in v]))) for k, v in scores.items()}
        oracle = max(SWEEP, key=lambda s: means[f"strength {s:g}, 1 step"][0])
        known = [abs(e - t) for e, t in zip(estimates, truths) if t is not None]
        row = {
            "family": name,
            "crops": len(crops),
            "estimate_mean": float(np.mean(estimates)),
            "start_mean": float(np.mean(starts)),
            "true_t_mean": float(np.mean([t for t in truths if t is not None])) if known else None,
            "estimate_abs_error": float(np.mean(known)) if known else None,
            "oracle_strength": oracle,
            # per crop, not the capped mean: how many came back at 40 dB or more (the clean-photo target)
            "auto_at_least_40db": sum(score[0] >= 40.0 for score in scores["auto, 1 step"]),
            "psnr_lpips": means,
        }
        rows.append(row)
        print(json.dumps({"task": task_id, "family": name, "auto": means["auto, 1 step"], "s1": means["strength 1, 1 step"],
                          "oracle": means[f"strength {oracle:g}, 1 step"], "estimate": row["estimate_mean"], "start": row["start_mean"]}), flush=True)  # fmt: skip
    return {"task": task_id, "default_steps": steps, "families": rows}


def format_table(result: dict) -> str:
    steps = result["default_steps"]
    # The last column: the blind peer on the noise families; the two readings of auto alone on JPEG files.
    if result["task"] == "jpeg":
        last = "auto, pixels only / tables only, 1 step"

        def extra(m):
            keys = ("auto, pixels only, 1 step", "auto, tables only, 1 step")
            return " · ".join(f"{m[k][0]:.2f} / {m[k][1]:.3f}" for k in keys if k in m)
    else:
        last = "CDnCNN-B"

        def extra(m):
            return f"{m['CDnCNN-B'][0]:.2f} / {m['CDnCNN-B'][1]:.3f}" if "CDnCNN-B" in m else ""

    lines = [
        f"**{result['task']}** (* = not trained on); PSNR dB / LPIPS; estimate = mean t read off the inputs, "
        "start = mean start t of auto",
        "",
        f"| family | estimate (true t) | start | input | auto 1 step | strength 1, 1 step | oracle 1 step (strength) | auto {steps} steps | strength 1, {steps} steps | {last} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in result["families"]:
        m = row["psnr_lpips"]

        def cell(key, m=m):
            return f"{m[key][0]:.2f} / {m[key][1]:.3f}" if key in m else ""

        truth = f" ({row['true_t_mean']:.2f})" if row["true_t_mean"] is not None else ""
        crops = row.get("crops", 0)
        kept = f" ({row['auto_at_least_40db']}/{crops} ≥ 40 dB)" if row["family"] == "clean" and crops else ""
        oracle = f"strength {row['oracle_strength']:g}, 1 step"
        lines.append(
            f"| {row['family']} | {row['estimate_mean']:.2f}{truth} | {row['start_mean']:.2f} | {cell('input')} | "
            f"{cell('auto, 1 step')}{kept} | "
            f"{cell('strength 1, 1 step')} | {cell(oracle)} ({row['oracle_strength']:g}) | {cell(f'auto, {steps} steps')} | "
            f"{cell(f'strength 1, {steps} steps')} | {extra(m)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.blind_restoration", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data_dir", required=True, help="held-out clean photos")
    parser.add_argument("--tasks", nargs="+", default=["denoise", "jpeg", "defocus_deblur", "motion_deblur"])
    parser.add_argument("--crop", type=int, default=256, help="centre crop per photo (default: 256)")
    parser.add_argument("--max_images", type=int, default=8, help="photos (default: 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    crops = load_clean_images(args.data_dir, args.crop, 4, args.max_images)
    tasks = [t for t in args.tasks if TASKS[t].bundled_estimator]
    skipped = sorted(set(args.tasks) - set(tasks))
    if skipped:
        print(f"no estimator bundled for {', '.join(skipped)}: skipped")
    results = {
        "machine": machine_line(args.threads),
        "data_dir": args.data_dir,
        "crops": len(crops),
        "crop": args.crop,
        "tasks": [run_task(task, crops) for task in tasks],
    }
    print()
    for result in results["tasks"]:
        print(format_table(result) + "\n")
    if args.json:
        write_results(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
