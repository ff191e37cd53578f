"""Does bf16 change what a bundled model restores? The gate each repo passes before "auto" may run it in bf16.

For every repo, restores the held-out crops (degraded as ``train/eval_indi.py`` degrades them: same settings, same
seeds) at 1 step and at the repo's recommended steps, once in fp32 and once under bf16 autocast, with the same walk
seeds, and reports the change of PSNR and LPIPS against the clean crops and the PSNR of the bf16 output against the
fp32 output. A repo passes when |ΔPSNR| < 0.02 dB and |ΔLPIPS| < 0.002 at both step counts.

    python -m zoo.precision_gate --data_dir data/shared_photos/val --json docs/measurements/perf/precision_gate.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from indi_pipeline import InDIPipeline, get_task
from indi_pipeline.degradations import degradation_generator, degrade, pipeline_input
from indi_pipeline.machine import machine_line
from indi_pipeline.metrics import lpips, psnr
from train.eval_indi import load_clean_images, restore

PSNR_LIMIT_DB = 0.02
LPIPS_LIMIT = 0.002
# The card settings of the gate: (repo task, degradation kwargs, strength for the pipeline)
SETTINGS = {
    "denoise": ({"sigma": 25 / 255}, 0.5),
    "sr4": ({}, 1.0),
    "jpeg": ({"quality": 10}, 1.0),
    "motion_deblur": ({}, 1.0),
    "defocus_deblur": ({}, 1.0),
}


def recommended_steps(repo: Path) -> int:
    evaluations = sorted(repo.glob("eval_*.json"))
    return int(json.loads(evaluations[0].read_text())["recommended_steps"])


def gate_repo(repo: Path, data_dir: str, crop: int, max_images: int, seed: int) -> dict:
    pipe = InDIPipeline.from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    task = get_task(pipe.config.task)
    kwargs, strength = SETTINGS[task.task_id]
    images = load_clean_images(data_dir, crop, max(4, task.upscale_factor), max_images)
    rows = []
    for steps in sorted({1, recommended_steps(repo)}):
        sums = {"fp32_psnr": 0.0, "bf16_psnr": 0.0, "fp32_lpips": 0.0, "bf16_lpips": 0.0, "bf16_vs_fp32_psnr": 0.0}
        for index, (_, clean) in enumerate(images):
            degraded = degrade(task.task_id, clean, generator=degradation_generator(seed + index), **kwargs)
            pipe_input = pipeline_input(clean, degraded, task.upscale_factor)
            outputs = {}
            for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                pipe.autocast_dtype = dtype
                outputs[name] = restore(pipe, pipe_input, steps, strength, seed + index)[0].clamp(0, 1)
                sums[f"{name}_psnr"] += psnr(outputs[name], clean).item()
                sums[f"{name}_lpips"] += lpips(outputs[name], clean).item()
            sums["bf16_vs_fp32_psnr"] += psnr(outputs["bf16"], outputs["fp32"]).item()
        means = {key: value / len(images) for key, value in sums.items()}
        means.update(
            steps=steps,
            psnr_change_db=means["bf16_psnr"] - means["fp32_psnr"],
            lpips_change=means["bf16_lpips"] - means["fp32_lpips"],
        )
        rows.append(means)
        print(f"{repo.name} {steps} steps: {json.dumps({k: round(v, 4) for k, v in means.items()})}", flush=True)
    passed = all(abs(r["psnr_change_db"]) < PSNR_LIMIT_DB and abs(r["lpips_change"]) < LPIPS_LIMIT for r in rows)
    return {"repo": repo.name, "task": task.task_id, "crops": len(images), "rows": rows, "passed": passed}


def format_table(results: dict) -> str:
    lines = [
        f"{results['machine']}; {results['crops']} crops of {results['crop']} px from {results['data_dir']}.",
        "",
        "| repo | steps | PSNR fp32 → bf16 | ΔPSNR | LPIPS fp32 → bf16 | ΔLPIPS | bf16 vs fp32 | gate |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for repo in results["repos"]:
        for row in repo["rows"]:
            lines.append(
                f"| {repo['repo']} | {row['steps']} | {row['fp32_psnr']:.3f} → {row['bf16_psnr']:.3f} | "
                f"{row['psnr_change_db']:+.4f} | {row['fp32_lpips']:.4f} → {row['bf16_lpips']:.4f} | "
                f"{row['lpips_change']:+.5f} | {row['bf16_vs_fp32_psnr']:.1f} dB | "
                f"{'pass' if repo['passed'] else '**fail**'} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.precision_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="*", default=None, help="model repos (default: every model_cards/indi-*)")
    parser.add_argument("--data_dir", required=True, help="folder of held-out clean photos")
    parser.add_argument("--crop", type=int, default=256, help="centre crop per photo in px (default: 256)")
    parser.add_argument("--max_images", type=int, default=0, help="at most this many photos (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradations and walks (default: 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repos = [Path(r) for r in args.repos] if args.repos else sorted(Path("model_cards").glob("indi-*"))
    repos = [r for r in repos if (r / "model_index.json").is_file()]
    if not repos:
        raise SystemExit("error: no model repos to gate")
    gated = [gate_repo(repo, args.data_dir, args.crop, args.max_images, args.seed) for repo in repos]
    results = {
        "machine": machine_line(args.threads),
        "data_dir": args.data_dir,
        "crop": args.crop,
        "crops": gated[0]["crops"],
        "limits": {"psnr_db": PSNR_LIMIT_DB, "lpips": LPIPS_LIMIT},
        "repos": gated,
    }
    print()
    print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(repo["passed"] for repo in gated) else 1


if __name__ == "__main__":
    raise SystemExit(main())
