"""Auto restoration: does `restore_auto` restore what a photo has, single and compound degradations, and leave
clean photos alone?

Each held-out photo (a centre crop) is degraded by each case of `benchmarks.detection` (a JPEG save reaches the
chain as a file, with its tables) and restored by:

* **input**: nothing done;
* **best single model** (oracle): each same-size zoo model alone from its own estimated start ("auto") at its
  default steps; the one with the best mean PSNR on the case, chosen with hindsight;
* **auto**: `restore_auto` as shipped (detection, then the models in chain order, every stage from the start read
  on the input); and **auto, re-estimating**: each stage after the first re-reads its start from the image the
  stage before returned;
* **oracle chain**: `run_chain` with the true degradations in chain order, each model from its true t
  (sigma / sigma_max for noise, 1 for JPEG and blur: their degraded image is the end of the model's path).

It prints PSNR / LPIPS per case and the detection counts of the auto chain, and writes both as JSON.

    python -m benchmarks.auto_restoration --data_dir data/shared_photos/val --json docs/measurements/auto/auto_restoration.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks.blind_restoration import score_8bit
from benchmarks.detection import CASES, as_uploaded, case_row, damaged, rates
from benchmarks.detection import format_table as detection_table
from benchmarks.timing import write_results
from indi_pipeline.acceleration import optimize_for_inference
from indi_pipeline.auto_restore import CHAIN_ORDER, load_pipelines, restore_auto, run_chain
from indi_pipeline.degradations import degradation_generator
from indi_pipeline.machine import machine_line
from train.eval_indi import load_clean_images

# The targets of the issue that asked for this benchmark.
CLEAN_TARGET_DB = 40.0
ORACLE_CHAIN_MARGIN_DB = 0.5


def oracle_chain(damages) -> list[tuple[str, float]]:
    """The true degradations in chain order, each at its true t (the stronger one where a task occurs twice)."""
    true_t: dict[str, float] = {}
    for damage in damages:
        true_t[damage.task] = max(true_t.get(damage.task, 0.0), damage.true_t)
    return [(task, true_t[task]) for task in CHAIN_ORDER if task in true_t]


def restore_case(pipelines: dict, y_file, y: torch.Tensor, damages, seed: int) -> dict:
    """{method: restored (1, 3, H, W)} for one degraded crop; singles are keyed "single: <task>"."""

    def generator():
        return torch.Generator().manual_seed(seed)

    out = {"input": y}
    for task_id, pipe in pipelines.items():
        single = run_chain(y_file, {task_id: pipe}, [(task_id, "auto")], generator=generator())
        out[f"single: {task_id}"] = single.image
    auto = restore_auto(y_file, pipelines, generator=generator())
    out["auto"] = auto.image
    out["auto, re-estimating"] = restore_auto(y_file, pipelines, reestimate=True, generator=generator()).image
    out["oracle chain"] = run_chain(y_file, pipelines, oracle_chain(damages), generator=generator()).image
    return {"images": out, "findings": auto.findings, "stages": [s.task for s in auto.stages]}


def run(crops: list[tuple[str, torch.Tensor]], pipelines: dict) -> dict:
    tasks = [t for t in CHAIN_ORDER if t in pipelines]
    rows, detection_rows = [], []
    for index, (name, damages) in enumerate(CASES.items()):
        scores: dict[str, list] = {}
        found = {t: 0 for t in tasks}
        chains = []
        for k, (_, clean) in enumerate(crops):
            y = damaged(clean, damages, degradation_generator(1000 * index + k))
            restored = restore_case(pipelines, as_uploaded(y, damages), y, damages, seed=k)
            for method, image in restored["images"].items():
                scores.setdefault(method, []).append(score_8bit(image, clean))
            for finding in restored["findings"]:
                found[finding.task] += finding.present
            chains.append(restored["stages"])
        detection_rows.append(case_row(name, damages, len(crops), found))
        rows.append(summarise(name, damages, scores, chains))
        print(json.dumps({k: rows[-1][k] for k in ("case", "best_single", "psnr_lpips")}), flush=True)
    return {"tasks": tasks, "cases": rows, "detection": {"cases": detection_rows, **rates(detection_rows, tasks)}}


def summarise(name: str, damages, scores: dict, chains: list[list[str]]) -> dict:
    means = {k: (float(np.mean([s[0] for s in v])), float(np.mean([s[1] for s in v]))) for k, v in scores.items()}
    singles = [k for k in means if k.startswith("single: ")]
    best_single = max(singles, key=lambda k: means[k][0])
    auto, source = means["auto"], means["input"]
    per_crop = zip(scores["auto"], scores["input"])
    return {
        "case": name,
        "truth": [d.task for d in damages],
        "oracle_chain": oracle_chain(damages),
        "crops": len(chains),
        "auto_chains": {" → ".join(c) or "nothing": chains.count(c) for c in map(list, {tuple(c) for c in chains})},
        "best_single": best_single.removeprefix("single: "),
        "psnr_lpips": means,
        # the targets, on the case's means (crop counts beside them)
        "auto_not_worse_than_input": auto[0] >= source[0] and auto[1] <= source[1],
        "crops_auto_worse_than_input_on_both": sum(a[0] < i[0] and a[1] > i[1] for a, i in per_crop),
        "auto_minus_oracle_chain_db": auto[0] - means["oracle chain"][0],
        "auto_minus_best_single_db": auto[0] - means[best_single][0],
        "crops_at_least_40db": sum(s[0] >= CLEAN_TARGET_DB for s in scores["auto"]) if not damages else None,
        "per_crop_psnr_lpips": {k: [[round(a, 3), round(b, 4)] for a, b in v] for k, v in scores.items()},
    }


def format_table(result: dict) -> str:
    lines = [
        "| case | input | best single model (which) | auto | auto, re-estimating | oracle chain | "
        "auto − oracle chain | auto ≥ input (PSNR and LPIPS) |",
        "|---|---|---|---|---|---|---:|---|",
    ]
    for row in result["cases"]:
        m = row["psnr_lpips"]

        def cell(key, m=m):
            return f"{m[key][0]:.2f} / {m[key][1]:.3f}"

        verdict = "yes" if row["auto_not_worse_than_input"] else "**no**"
        if row["crops_at_least_40db"] is not None:
            verdict += f" ({row['crops_at_least_40db']}/{row['crops']} crops ≥ 40 dB)"
        lines.append(
            f"| {row['case']} | {cell('input')} | {cell('single: ' + row['best_single'])} ({row['best_single']}) | "
            f"{cell('auto')} | {cell('auto, re-estimating')} | {cell('oracle chain')} | "
            f"{row['auto_minus_oracle_chain_db']:+.2f} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.auto_restoration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="held-out clean photos")
    parser.add_argument("--crop", type=int, default=256, help="centre crop per photo (default: 256; 0 = whole)")
    parser.add_argument("--max_images", type=int, default=8, help="photos, in sorted order (default: 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipelines = {task: optimize_for_inference(pipe) for task, pipe in load_pipelines().items()}
    if not pipelines:
        raise SystemExit("error: no bundled model repo has a start estimator")
    crops = load_clean_images(args.data_dir, args.crop, 16, args.max_images)
    result = {
        "machine": machine_line(args.threads),
        "data_dir": args.data_dir,
        "crop": args.crop,
        "photos": [name for name, _ in crops],
        **run(crops, pipelines),
    }
    print()
    print(format_table(result))
    print()
    print(detection_table(result["detection"] | {"tasks": result["tasks"]}))
    if args.json:
        write_results(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
