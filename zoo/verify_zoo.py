#!/usr/bin/env python
"""Checks that the bundled model cards hold what a re-run of their evaluation gives.

For every model repo and every ``eval_<setting>.json`` in it: re-runs the command recorded in that file (its
``train/eval_indi.py`` arguments, written to a temporary folder instead of the repo), compares every table row
(PSNR, SSIM, LPIPS, sharpness; not the seconds, which depend on the machine's load), the recommended step count
and the sample variation; likewise re-runs a ``floor_check.json`` (``research/floor_check.py``) and compares the gain
of every seed set; then regenerates the model card from the committed evaluation files and checks that it
is the committed README.md. Prints a table, optionally writes JSON, and exits 1 on any difference.

    python -m zoo.verify_zoo                                  # every repo under model_cards/
    python -m zoo.verify_zoo model_cards/indi-jpeg --json verify.json
    python -m zoo.verify_zoo --jobs 2 --json docs/measurements/zoo/verify_zoo.json  # two at a time
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from research import floor_check
from train import eval_indi, make_model_card

# The re-run must agree to these (absolute) differences; the evaluation is seeded, so on one machine it agrees to
# float rounding. Other CPUs (another oneDNN kernel) may differ in the last digits the cards print.
TOLERANCES = {"psnr": 0.01, "ssim": 1e-4, "lpips": 1e-4, "sharpness": 1e-3}
VARIATION_TOLERANCE = 0.01  # /255
# How a recorded command names its script: as a file (records made before the folders moved) or as a module.
EVAL_SCRIPT = ("train/eval_indi.py", "train.eval_indi")
FLOOR_CHECK_SCRIPT = ("train/floor_check.py", "research.floor_check")


def recorded_arguments(
    record: dict, output: Path, script: tuple[str, ...] = EVAL_SCRIPT, output_flag: str = "--output_dir"
) -> list[str]:
    """The ``script`` arguments of a recorded command, writing to ``output`` instead of where the record went."""
    words = shlex.split(record["command"])
    named = [i for i, word in enumerate(words) if word in script]
    if not named:
        raise ValueError(f"not a {script[0]} command: {record['command']!r}")
    argv = words[named[0] + 1 :]
    if output_flag in argv:
        del argv[argv.index(output_flag) : argv.index(output_flag) + 2]
    return [*argv, output_flag, str(output)]


def row_key(row: dict) -> tuple:
    return row["method"], row["steps"], row["eps"]


def compare(recorded: dict, rerun: dict) -> dict:
    """Largest differences per metric, and what does not match (an empty ``problems`` list when all agree)."""
    problems = []
    recorded_rows = {row_key(r): r for r in recorded["table"]}
    rerun_rows = {row_key(r): r for r in rerun["table"]}
    if recorded_rows.keys() != rerun_rows.keys():
        problems.append(f"rows differ: {sorted(map(str, recorded_rows.keys() ^ rerun_rows.keys()))}")
    largest = {metric: 0.0 for metric in TOLERANCES}
    for key in recorded_rows.keys() & rerun_rows.keys():
        for metric, tolerance in TOLERANCES.items():
            difference = abs(recorded_rows[key][metric] - rerun_rows[key][metric])
            largest[metric] = max(largest[metric], difference)
            if difference > tolerance:
                problems.append(
                    f"{key} {metric}: card {recorded_rows[key][metric]:.4f}, re-run {rerun_rows[key][metric]:.4f}"
                )
    if recorded["recommended_steps"] != rerun["recommended_steps"]:
        problems.append(f"recommended steps: card {recorded['recommended_steps']}, re-run {rerun['recommended_steps']}")
    card_std, rerun_std = recorded["variation"]["mean_pixel_std_255"], rerun["variation"]["mean_pixel_std_255"]
    measured_by_one_only = (card_std is None) != (rerun_std is None)
    if measured_by_one_only or card_std is not None and abs(card_std - rerun_std) > VARIATION_TOLERANCE:
        problems.append(f"sample variation: card {card_std}, re-run {rerun_std}")
    return {"largest_difference": largest, "problems": problems}


def card_is_current(folder: Path) -> bool:
    """Whether README.md is exactly the card make_model_card.py writes from the committed evaluation files."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "README.md"
        make_model_card.build_card(folder, None).save(fresh)
        return fresh.read_text() == (folder / "README.md").read_text()


def compare_floor_checks(recorded: dict, rerun: dict) -> dict:
    """Largest difference in any seed set's dB figures (the 1-step gains at the model's eps and eps 0, the PSNR drop at
    the trade-off steps), and what does not match (the LPIPS reduction too)."""
    problems, largest = [], 0.0
    if [s["seed"] for s in recorded["sets"]] != [s["seed"] for s in rerun["sets"]]:
        problems.append(
            f"seed sets differ: card {[s['seed'] for s in recorded['sets']]}, "
            f"re-run {[s['seed'] for s in rerun['sets']]}"
        )
    # dB figures to the PSNR tolerance; the LPIPS reduction (a fraction) to 0.1 %
    tolerances = {
        "gain_db": TOLERANCES["psnr"],
        "gain_db_eps0": TOLERANCES["psnr"],
        "psnr_drop_db": TOLERANCES["psnr"],
        "lpips_reduction": 1e-3,
    }
    if recorded.get("tradeoff_steps") != rerun.get("tradeoff_steps"):
        problems.append(f"trade-off steps: card {recorded.get('tradeoff_steps')}, re-run {rerun.get('tradeoff_steps')}")
    for card_set, rerun_set in zip(recorded["sets"], rerun["sets"]):
        for key in (k for k in tolerances if k in card_set and k in rerun_set):
            difference = abs(card_set[key] - rerun_set[key])
            if key != "lpips_reduction":
                largest = max(largest, difference)
            if difference > tolerances[key]:
                problems.append(
                    f"seed {card_set['seed']} {key}: card {card_set[key]:+.4f}, re-run {rerun_set[key]:+.4f}"
                )
    return {"largest_difference": {"psnr": largest}, "problems": problems}


def verify_record(path: Path) -> dict:
    """Re-runs one recorded evaluation (eval_*.json) or floor check (floor_check.json) and compares it with the record."""
    recorded = json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        if path.name == make_model_card.FLOOR_CHECK_FILE:
            argv = recorded_arguments(recorded, Path(tmp) / path.name, FLOOR_CHECK_SCRIPT, "--json")
            rerun = floor_check.main(argv)
            return {
                "repo": path.parent.name,
                "setting": f"{recorded['setting']}, floor check",
                **compare_floor_checks(recorded, rerun),
            }
        rerun = eval_indi.main(recorded_arguments(recorded, Path(tmp)))
    return {"repo": path.parent.name, "setting": recorded["setting"], **compare(recorded, rerun)}


def verify_repos(folders: list[Path], jobs: int = 1) -> list[dict]:
    """Every recorded evaluation and floor check of every folder (``jobs`` at a time, each with the threads its command
    records: the zoo's record --threads 1), then each card."""
    evaluations = {
        folder: sorted(folder.glob("eval_*.json")) + sorted(folder.glob(make_model_card.FLOOR_CHECK_FILE))
        for folder in folders
    }
    paths = [path for folder in folders for path in evaluations[folder]]
    if jobs > 1:
        # spawn, not fork: a forked child inherits torch's thread pools in whatever state the parent left them
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            reruns = dict(zip(paths, pool.map(verify_record, paths)))
    else:
        reruns = {path: verify_record(path) for path in paths}
    results = []
    for folder in folders:
        if not any(path.name.startswith("eval_") for path in evaluations[folder]):
            results.append({"repo": folder.name, "setting": None, "problems": ["no eval_*.json in the repo"]})
            continue
        card_problem = "README.md is not the card make_model_card.py writes from these evaluations"
        try:
            current = card_is_current(folder)
        except ValueError as error:  # e.g. a floor_check.json measured on other weights
            current, card_problem = False, f"the card cannot be made: {error}"
        for path in evaluations[folder]:
            result = reruns[path]
            result["card_current"] = current
            if not current:
                result["problems"].append(card_problem)
            results.append(result)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Re-run the bundled models' evaluations and check their cards.")
    parser.add_argument("folders", nargs="*", help="Model repo folders (default: every model_cards/indi-*).")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument(
        "--jobs", type=int, default=1, help="Evaluations re-run at once (the zoo's run on one thread each)."
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    folders = [Path(f) for f in args.folders] or sorted(Path("model_cards").glob("indi-*"))
    results = verify_repos(folders, args.jobs)
    print("| repo | setting | max ΔPSNR (dB) | max ΔSSIM | max ΔLPIPS | card current | verdict |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in results:
        largest = r.get("largest_difference") or {}
        cells = [f"{largest[m]:.4f}" if m in largest else "" for m in ("psnr", "ssim", "lpips")]
        verdict = "matches" if not r["problems"] else "; ".join(r["problems"])
        print(f"| {r['repo']} | {r['setting']} | {' | '.join(cells)} | {r.get('card_current', '')} | {verdict} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
