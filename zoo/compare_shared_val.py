"""Zoo repos side by side on the held-out shared photos, against the zoo targets and the peers (issue 25's table).

Reads the `eval_<setting>.json` files that `zoo/eval_shared_val.sh` writes for each run (a folder of
`indi-<task>/` folders per run: the bundled repos, a candidate, ...). Every run is scored on the same crops with the
same seeds, so the difference of two runs is paired crop by crop: the table gives its mean, standard error and how
many crops gained.

    python -m zoo.compare_shared_val --run bundled=outputs/shared_val/bundled --run new=outputs/shared_val/new \
        --json docs/measurements/zoo/shared_val_2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from train.eval_indi import recommend_steps
from train.make_model_card import TRADE_OFF_LPIPS_REDUCTION

# Issue 25's targets at 1 step: a gain over the input in dB, or a peer to meet (the method's row in the same JSON).
TARGETS = {
    ("denoise", "sigma25"): ("peer", "CDnCNN-S (sigma 25 only)"),
    ("denoise", "sigma50"): ("peer", "CDnCNN-S (sigma 50 only)"),
    ("sr4", "default"): ("gain", 1.5),
    ("jpeg", "q10"): ("gain", 1.5),
    ("defocus_deblur", "default"): ("gain", 3.0),
    ("motion_deblur", "default"): ("gain", 2.5),
}


def load_run(folder: Path) -> dict:
    """{(task, setting): eval result} of one run's folder."""
    results = {}
    for path in sorted(folder.glob("indi-*/eval_*.json")):
        result = json.loads(path.read_text())
        results[(result["task"], result["setting"])] = result
    return results


def trade_off(result: dict) -> dict:
    """The trade-off rule on the evaluation's table, as the evaluation and the cards judge it: the lowest LPIPS within
    1 dB of 1 step (``steps`` None where that is 1 step itself)."""
    one, best = recommend_steps(result["table"], result["model_eps"])
    reduction = 1 - best["lpips"] / one["lpips"]
    return {
        "steps": best["steps"] if best["steps"] > 1 else None,
        "lpips_reduction": reduction,
        "psnr_drop": one["psnr"] - best["psnr"],
        "met": reduction >= TRADE_OFF_LPIPS_REDUCTION,
    }


def target(result: dict) -> dict | None:
    """The zoo target of this task and setting, and whether 1 step meets it."""
    goal = TARGETS.get((result["task"], result["setting"]))
    if goal is None:
        return None
    one = result["one_step"]["psnr"]
    kind, value = goal
    if kind == "gain":
        gain = result["gain_over_input_db_one_step"]
        return {"target": f"+{value:g} dB over the input", "margin_db": gain - value, "met": gain >= value}
    peer = next((r for r in result["table"] if r["method"] == value), None)
    if peer is None:
        return {"target": f"≥ {value}", "margin_db": None, "met": None}
    return {"target": f"≥ {value}", "margin_db": one - peer["psnr"], "met": one >= peer["psnr"]}


def paired(before: dict, after: dict) -> dict | None:
    """after - before at 1 step, crop by crop (the runs must have scored the same crops); None where an evaluation
    predates per-crop PSNR (some committed card evaluations), so only its means compare."""
    if before["images"] != after["images"] or before["seed"] != after["seed"]:
        raise ValueError(f"{after['task']} {after['setting']}: the runs scored different crops or seeds")
    if "per_image_psnr" not in before or "per_image_psnr" not in after:
        return None
    gain = np.subtract(after["per_image_psnr"]["one_step"], before["per_image_psnr"]["one_step"])
    return {
        "mean_db": float(gain.mean()),
        "standard_error_db": float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else None,
        "crops_better": int((gain > 0).sum()),
        "crops": len(gain),
    }


def peers(result: dict) -> dict:
    return {r["method"]: [r["psnr"], r["lpips"]] for r in result["table"] if r["method"].startswith(("CDnCNN", "BM3D"))}


def compare(runs: dict[str, dict]) -> list[dict]:
    names = list(runs)
    first = runs[names[0]]
    rows = []
    for key in sorted(first):
        row = {"task": key[0], "setting": key[1], "input": first[key]["table"][0]["psnr"], "runs": {}}
        for name in names:
            result = runs[name].get(key)
            if result is None:
                continue
            row["runs"][name] = {
                "one_step": [result["one_step"]["psnr"], result["one_step"]["lpips"]],
                "gain_over_input_db": result["gain_over_input_db_one_step"],
                "target": target(result),
                "trade_off": trade_off(result),
                "paired_vs_first": paired(first[key], result) if name != names[0] else None,
            }
        row["peers"] = {}  # the same seeds in every run: a peer scored in any of them (BM3D only where installed)
        for name in names:
            if key in runs[name]:
                row["peers"] = {**peers(runs[name][key]), **row["peers"]}
        rows.append(row)
    return rows


def format_table(rows: list[dict], names: list[str]) -> str:
    header = ["task", "setting", "input"]
    for name in names:
        header += [f"{name}: 1 step", f"{name}: target"]
        if name != names[0]:
            header.append(f"{name} − {names[0]} (paired)")
    header.append("peers at 1 pass")
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [row["task"], row["setting"], f"{row['input']:.2f}"]
        for name in names:
            run = row["runs"].get(name)
            if run is None:
                cells += [""] * (2 if name == names[0] else 3)
                continue
            off = run["trade_off"]
            # the trade-off where the evaluation ran more than 1 step: its best N's LPIPS change
            best = f"; {off['steps']} steps −{off['lpips_reduction']:.0%} LPIPS" if off["steps"] else ""
            cells.append(
                f"{run['one_step'][0]:.2f} / {run['one_step'][1]:.3f} ({run['gain_over_input_db']:+.2f}{best})"
            )
            goal = run["target"]
            if goal is None or goal["met"] is None:
                cells.append("")
            else:
                cells.append(f"{'met' if goal['met'] else '**missed**'} ({goal['margin_db']:+.2f} dB)")
            if name != names[0]:
                p = run["paired_vs_first"]
                if p is None:
                    cells.append("not paired (no per-crop PSNR)")
                    continue
                se = f" ± {p['standard_error_db']:.3f}" if p["standard_error_db"] is not None else ""
                cells.append(f"{p['mean_db']:+.3f}{se} ({p['crops_better']}/{p['crops']} crops up)")
        cells.append("; ".join(f"{m} {v[0]:.2f} / {v[1]:.3f}" for m, v in row["peers"].items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", action="append", required=True, help="NAME=FOLDER of one run; the first is the reference"
    )
    parser.add_argument("--json", default=None, help="also write the comparison here")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, _, folder = spec.partition("=")
        if not folder or not Path(folder).is_dir():
            parser.error(f"--run {spec!r}: give NAME=FOLDER with an existing folder")
        runs[name] = load_run(Path(folder))
        if not runs[name]:
            parser.error(f"--run {spec!r}: no indi-*/eval_*.json under {folder}")
    rows = compare(runs)
    print(format_table(rows, list(runs)))
    if args.json:
        machine = next(iter(next(iter(runs.values())).values()))["machine"]
        record = {"runs": {n: a for n, a in (s.partition("=")[::2] for s in args.run)}, "machine": machine}
        Path(args.json).write_text(json.dumps({**record, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
