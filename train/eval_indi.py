#!/usr/bin/env python
"""Evaluate an InDI model repo: the perception–distortion trade-off over the number of steps.

Degrades clean photos with a fixed seed (the library's own degradations, drawn from `degradation_generator(seed)` as
`indi degrade --seed` does), restores them at several step counts (walks seeded with the same seed, as `indi restore`),
and reports PSNR, SSIM, LPIPS-alex, a sharpness ratio (high-frequency energy of the output over that of the clean
image; 1.0 = as detailed as the truth) and seconds per image, next to the degraded input (bicubic for sr4) and,
when asked, a regression baseline (a `--t_sampling one` model) and, for denoising, BM3D given the true sigma (`--bm3d`).
Writes JSON, a Markdown table and a plot.

    python -m train.eval_indi --model model_cards/indi-denoise --task denoise --data_dir data/photos/val --sigma 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from indi_pipeline import InDIPipeline, get_task
from indi_pipeline.degradations import (
    SR_DOWNSCALES,
    bicubic_upsample,
    crop_to_multiple,
    degradation_generator,
    degrade,
    pipeline_input,
    sr_downsample,
)
from indi_pipeline.machine import cpu_model, threads_text
from indi_pipeline.metrics import high_frequency_ratio, lpips, psnr, ssim
from indi_pipeline.noise_models import camera_noise, correlated_noise
from indi_pipeline.photo_mix import NOISE_KINDS
from indi_pipeline.tasks import TASKS

METRICS = ("psnr", "ssim", "lpips", "sharpness")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate an InDI model over the number of steps.")
    parser.add_argument("--model", required=True, help="Model repo folder or Hub id.")
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="Task the model restores.")
    parser.add_argument("--data_dir", required=True, help="Folder of clean images (never seen in training).")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="Step counts to test.")
    parser.add_argument(
        "--eps", type=float, nargs="*", default=None, help="Extra eps values (the repo's is always in)."
    )
    parser.add_argument("--baseline_model", default=None, help="A regression (`--t_sampling one`) repo, run at 1 step.")
    parser.add_argument(
        "--bm3d",
        action="store_true",
        help="denoise: also score BM3D given the true sigma (needs `pip install bm3d`; its binary is free for "
        "non-commercial use only, so it is not a project requirement)",
    )
    parser.add_argument(
        "--peers", action="store_true", help="denoise: also score the CDnCNN peers of ../shared/peers (evaluation only)"
    )
    parser.add_argument("--sigma", type=float, default=None, help="denoise: noise sigma in 0-255 units (default 50).")
    parser.add_argument(
        "--noise",
        choices=NOISE_KINDS,
        default="white",
        help="denoise: the noise's kind, of RMS --sigma (default white, the task's definition; camera = shot + read "
        "noise in linear light, correlated = mixed across channels and a little in space: the photo mix's kinds)",
    )
    parser.add_argument("--quality", type=int, default=None, help="jpeg: JPEG quality (default 10).")
    parser.add_argument(
        "--downscale",
        choices=SR_DOWNSCALES,
        default="bicubic",
        help="sr4: how the low-resolution input is made (default bicubic, the task's definition; bilinear and box "
        "show how the model does on images downscaled otherwise)",
    )
    parser.add_argument("--crop", type=int, default=512, help="Crop size (0 = whole photo).")
    parser.add_argument(
        "--grid",
        type=int,
        default=1,
        help="Score a grid x grid block of crops around each photo's centre, each degraded with its own seed "
        "(default 1: one centre crop). The zoo uses 2: 8 photos with one random blur each swung the deblurring "
        "gains by 0.8 dB between seeds.",
    )
    parser.add_argument("--max_images", type=int, default=0, help="Use at most this many photos (0 = all).")
    parser.add_argument("--variation_seeds", type=int, default=8, help="Seeds for the sample-variation measure.")
    parser.add_argument("--variation_images", type=int, default=2, help="Photos used for the variation measure.")
    parser.add_argument("--variation_crop", type=int, default=256, help="Centre crop of those photos for it.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the degradations and the walks.")
    parser.add_argument("--name", default=None, help="Suffix of the output files (default: from task settings).")
    parser.add_argument("--output_dir", default=None, help="Where to write (default: the model folder).")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    args = parser.parse_args(argv)
    if args.noise != "white" and args.task != "denoise":
        parser.error(f"--noise is for denoise (the kind of noise added), not {args.task}")
    if args.downscale != "bicubic" and args.task != "sr4":
        parser.error(f"--downscale is for sr4 (how its low-resolution input is made), not {args.task}")
    if args.variation_images > 0 and args.variation_seeds < 2:
        parser.error(
            f"--variation_seeds must be at least 2 (a spread needs two samples), got {args.variation_seeds}; "
            "--variation_images 0 skips the measure"
        )
    return args


def crop_starts(length: int, size: int, count: int) -> list[int]:
    """``count`` crop offsets along one axis: side by side around the centre when they fit, else spread evenly."""
    if count * size <= length:
        first = (length - count * size) // 2
        return [first + k * size for k in range(count)]
    return [round(k * (length - size) / max(count - 1, 1)) for k in range(count)]


def load_clean_images(
    folder: str, crop: int, multiple: int, max_images: int, grid: int = 1
) -> list[tuple[str, torch.Tensor]]:
    """The evaluation crops: per photo a ``grid`` x ``grid`` block of ``crop`` px crops around its centre (one
    centre crop for grid 1; the whole photo for crop 0), each a multiple of ``multiple``."""
    if grid < 1 or (grid > 1 and not crop):
        raise SystemExit(f"error: --grid must be >= 1 and needs a --crop size, got grid {grid}, crop {crop}")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"})
    if not paths:
        raise SystemExit(f"error: no images in {folder}")
    images = []
    for path in paths[: max_images or None]:
        array = np.asarray(PIL.Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(array).permute(2, 0, 1)[None]
        if not crop:
            images.append((path.stem, crop_to_multiple(x, multiple)))
            continue
        h, w = x.shape[-2:]
        size_h, size_w = min(crop, h), min(crop, w)
        for row, top in enumerate(crop_starts(h, size_h, grid)):
            for col, left in enumerate(crop_starts(w, size_w, grid)):
                name = path.stem if grid == 1 else f"{path.stem}_r{row}c{col}"
                images.append((name, crop_to_multiple(x[..., top : top + size_h, left : left + size_w], multiple)))
    return images


def degradation_settings(args, task) -> tuple[dict, float, str]:
    """Degradation kwargs, the pipeline strength, and a label of the setting."""
    if args.task == "denoise":
        sigma = 50.0 if args.sigma is None else args.sigma
        # Every kind has RMS sigma, so the strength the pipeline starts at is the same.
        kind = "" if args.noise == "white" else f"_{args.noise}"
        return {"sigma": sigma / 255.0}, task.strength_for_sigma(sigma / 255.0), f"sigma{sigma:g}{kind}"
    if args.task == "jpeg":
        quality = 10 if args.quality is None else args.quality
        return {"quality": quality}, 1.0, f"q{quality}"
    if args.task == "sr4" and args.downscale != "bicubic":
        return {}, 1.0, f"downscale_{args.downscale}"
    return {}, 1.0, "default"


def degraded_and_input(args, task, clean: torch.Tensor, index: int, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(the degraded image scored as the input, what the pipeline is given) for photo ``index``."""
    if task.upscale_factor > 1 and args.downscale != "bicubic":
        low = sr_downsample(clean, task.upscale_factor, args.downscale)
        return bicubic_upsample(low, size=tuple(clean.shape[-2:])), low
    generator = degradation_generator(args.seed + index)
    if args.task == "denoise" and args.noise != "white":
        degraded = NOISE_FUNCTIONS[args.noise](clean, kwargs["sigma"], generator=generator)
    else:
        degraded = degrade(args.task, clean, generator=generator, **kwargs)
    return degraded, pipeline_input(clean, degraded, task.upscale_factor)


def score(restored: torch.Tensor, clean: torch.Tensor) -> dict:
    restored = restored.clamp(0, 1)
    return {
        "psnr": psnr(restored, clean).item(),
        "ssim": ssim(restored, clean).item(),
        "lpips": lpips(restored, clean).item(),
        "sharpness": high_frequency_ratio(restored, clean).item(),
    }


def mean_rows(rows: list[dict]) -> dict:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


# --noise kinds other than the definition's white noise: a clean batch with noise of RMS sigma added.
NOISE_FUNCTIONS = {"camera": camera_noise, "correlated": correlated_noise}

REGRESSION, BM3D = "regression baseline", "BM3D (true sigma)"


def reference_methods(args, kwargs: dict, strength: float) -> dict:
    """Methods scored beside InDI: ``{label: run(pipe_input, seed) -> restored (1, 3, H, W)}``."""
    references = {}
    if args.baseline_model:
        baseline = InDIPipeline.from_pretrained(args.baseline_model).to(args.device)
        baseline.set_progress_bar_config(disable=True)
        references[REGRESSION] = lambda pipe_input, seed: restore(baseline, pipe_input, 1, strength, seed)[0]
    if args.bm3d:
        if args.task != "denoise":
            raise SystemExit("eval_indi: --bm3d is a denoising baseline (use it with --task denoise)")
        try:
            import bm3d
        except ImportError:
            raise SystemExit("eval_indi: --bm3d needs the bm3d package: pip install bm3d") from None
        sigma = kwargs["sigma"]

        def run_bm3d(noisy: torch.Tensor, seed: int) -> torch.Tensor:
            array = noisy[0].permute(1, 2, 0).double().numpy()
            return torch.from_numpy(bm3d.bm3d_rgb(array, sigma_psd=sigma)).permute(2, 0, 1)[None].float()

        references[BM3D] = run_bm3d
    if args.peers:
        references.update(peer_methods(args.task, kwargs))
    return references


def peer_methods(task_id: str, kwargs: dict) -> dict:
    """The CDnCNN denoisers of ``../shared/peers`` (evaluation only): the blind CDnCNN-B and, at sigma 25 or 50, the
    CDnCNN-S trained for that sigma alone."""
    if task_id != "denoise":
        raise SystemExit("eval_indi: --peers are denoisers (use them with --task denoise)")
    from benchmarks import peers as peer_models  # the peers live beside the checkout, not in the library

    sigma = round(kwargs["sigma"] * 255)
    names = {"CDnCNN-B (blind)": "cdncnn_b"}
    if sigma in (25, 50):
        names[f"CDnCNN-S (sigma {sigma} only)"] = f"cdncnn_s{sigma}"
    try:
        peers = {label: peer_models.cdncnn(name, peer_models.PEERS_DIR) for label, name in names.items()}
    except FileNotFoundError as error:
        raise SystemExit(f"eval_indi: --peers: {error}") from None
    return {label: (lambda noisy, seed, peer=peer: peer(noisy)) for label, peer in peers.items()}


def restore(pipe, pipe_input, steps, strength, seed, eps=None):
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out = pipe(pipe_input, num_inference_steps=steps, strength=strength, generator=generator, eps=eps, output_type="pt")
    return out.images.cpu(), time.perf_counter() - start


def evaluate(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    pipe = InDIPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    kwargs, strength, setting = degradation_settings(args, task)
    references = reference_methods(args, kwargs, strength)
    images = load_clean_images(args.data_dir, args.crop, max(4, task.upscale_factor), args.max_images, args.grid)
    model_eps = float(pipe.scheduler.config.eps)
    eps_values = [model_eps] + [e for e in (args.eps or []) if e != model_eps]

    rows: dict[str, list[dict]] = {}
    seconds: dict[str, list[float]] = {}
    for index, (name, clean) in enumerate(images):
        # the degradations' own stream: restored with manual_seed(args.seed + index), as `indi degrade` and
        # `indi restore` with one seed, never with the degradation's own noise (degradations module docstring)
        degraded, pipe_input = degraded_and_input(args, task, clean, index, kwargs)
        rows.setdefault("input", []).append(score(degraded, clean))
        for eps in eps_values:
            for steps in args.steps if eps == model_eps else [1]:
                key = f"indi|{eps:g}|{steps}"
                restored, elapsed = restore(pipe, pipe_input, steps, strength, args.seed + index, eps)
                rows.setdefault(key, []).append(score(restored, clean))
                seconds.setdefault(key, []).append(elapsed)
        for method, run in references.items():
            start = time.perf_counter()
            restored = run(pipe_input, args.seed + index)
            seconds.setdefault(method, []).append(time.perf_counter() - start)
            rows.setdefault(method, []).append(score(restored, clean))
        print(
            f"{name}: input PSNR {rows['input'][-1]['psnr']:.2f}, 1 step {rows[f'indi|{model_eps:g}|1'][-1]['psnr']:.2f}",
            flush=True,
        )

    table = []
    input_label = "bicubic" if task.upscale_factor > 1 else "degraded input"
    table.append({"method": input_label, "steps": None, "eps": None, **mean_rows(rows["input"]), "seconds": 0.0})
    for method, steps in ((m, 1 if m == REGRESSION else None) for m in references):
        table.append(
            {
                "method": method,
                "steps": steps,
                "eps": None,
                **mean_rows(rows[method]),
                "seconds": float(np.mean(seconds[method])),
            }
        )
    for key in rows:
        if key.startswith("indi|"):
            _, eps, steps = key.split("|")
            table.append(
                {
                    "method": "InDI",
                    "steps": int(steps),
                    "eps": float(eps),
                    **mean_rows(rows[key]),
                    "seconds": float(np.mean(seconds[key])),
                }
            )

    one, best = recommend_steps(table, model_eps)
    variation = sample_variation(pipe, images, args, kwargs, strength, best["steps"], task)
    return {
        "task": args.task,
        "setting": setting,
        "model": str(args.model),
        "data_dir": str(args.data_dir),
        "images": [name for name, _ in images],
        # per image, in `images` order: what a paired comparison of two models on the same crops needs
        "per_image_psnr": {
            "input": [round(r["psnr"], 4) for r in rows["input"]],
            "one_step": [round(r["psnr"], 4) for r in rows[f"indi|{model_eps:g}|1"]],
        },
        "crop": args.crop,
        "grid": args.grid,
        "seed": args.seed,
        "model_eps": model_eps,
        "table": table,
        "one_step": one,
        "recommended_steps": best["steps"],
        "recommended": best,
        "lpips_reduction_vs_one_step": 1.0 - best["lpips"] / one["lpips"],
        "psnr_drop_vs_one_step": one["psnr"] - best["psnr"],
        "gain_over_input_db_one_step": one["psnr"] - table[0]["psnr"],
        "variation": variation,
        "machine": f"{cpu_model()}, {threads_text(torch.get_num_threads())}, torch {torch.__version__}, "
        f"device {args.device}",
        "command": "python -m train.eval_indi " + " ".join(sys.argv[1:]),
    }


def recommend_steps(table: list[dict], model_eps: float) -> tuple[dict, dict]:
    """The 1-step row and the recommended row: the lowest LPIPS among step counts whose PSNR stays within 1 dB of
    one step (the issue's trade-off rule). If no N > 1 lowers LPIPS, 1 step is recommended and the card says so."""
    indi = [r for r in table if r["method"] == "InDI" and r["eps"] == model_eps]
    one = next(r for r in indi if r["steps"] == 1)
    candidates = [r for r in indi if r["psnr"] >= one["psnr"] - 1.0]
    return one, min(candidates, key=lambda r: (r["lpips"], r["steps"]))


def sample_variation(pipe, images, args, kwargs, strength, steps, task) -> dict:
    """Mean per-pixel standard deviation (0-255 units) over several seeds: how much samples vary."""
    stds = []
    # one crop from each of the first photos (crops of one photo sit next to each other in `images`)
    for index in range(0, len(images), args.grid**2)[: args.variation_images]:
        clean = images[index][1]
        h, w = clean.shape[-2:]
        size = min(args.variation_crop, h, w) // 4 * 4
        clean = clean[..., (h - size) // 2 : (h - size) // 2 + size, (w - size) // 2 : (w - size) // 2 + size]
        pipe_input = degraded_and_input(args, task, clean, index, kwargs)[1]
        batch = [pipe_input[0]] * args.variation_seeds
        generators = [torch.Generator().manual_seed(1000 + s) for s in range(args.variation_seeds)]
        samples = pipe(batch, num_inference_steps=steps, strength=strength, generator=generators, output_type="pt")
        stds.append(samples.images.std(dim=0).mean().item() * 255.0)
    return {
        "steps": steps,
        "seeds": args.variation_seeds,
        "images": len(stds),
        "mean_pixel_std_255": float(np.mean(stds)) if stds else None,
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| method | steps | eps | PSNR (dB) | SSIM | LPIPS | sharpness | s/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["table"]:
        steps = "" if r["steps"] is None else r["steps"]
        eps = "" if r["eps"] is None else f"{r['eps']:g}"
        lines.append(
            f"| {r['method']} | {steps} | {eps} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['lpips']:.4f} | "
            f"{r['sharpness']:.3f} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    indi = [r for r in result["table"] if r["method"] == "InDI" and r["eps"] == result["model_eps"]]
    steps = [r["steps"] for r in indi]
    reference = result["table"][0]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric, label in (
        (axes[0], "psnr", "PSNR (dB), higher is better"),
        (axes[1], "lpips", "LPIPS, lower is better"),
    ):
        ax.plot(steps, [r[metric] for r in indi], "o-", label="InDI")
        ax.axhline(reference[metric], color="gray", linestyle="--", label=reference["method"])
        for row, color in zip((r for r in result["table"][1:] if r["method"] != "InDI"), ("tab:red", "tab:green")):
            ax.axhline(row[metric], color=color, linestyle=":", label=row["method"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("InDI steps")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"indi-{result['task']} ({result['setting']}): perception–distortion trade-off over steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    result = evaluate(args)
    output_dir = Path(args.output_dir or args.model)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or f"eval_{result['setting']}"
    (output_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
    (output_dir / f"{name}.md").write_text(markdown_table(result))
    plot(result, output_dir / f"{name}.png")
    print(markdown_table(result))
    std = result["variation"]["mean_pixel_std_255"]
    std_text = "not measured (--variation_images 0)" if std is None else f"{std:.2f}/255"
    print(
        f"recommended steps {result['recommended_steps']}: LPIPS {-100 * result['lpips_reduction_vs_one_step']:+.1f} % "
        f"vs 1 step, PSNR {-result['psnr_drop_vs_one_step']:+.2f} dB; sample std {std_text}; wrote "
        f"{output_dir / name}.{{json,md,png}}"
    )
    return result


if __name__ == "__main__":
    main()
