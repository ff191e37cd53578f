#!/usr/bin/env python
"""The quality floor's number with its error bar: a model's 1-step gain over the degraded input, over several seed sets.

A card's table is one draw of the degradations (one random blur per crop). On 32 crops the defocus model's 1-step gain
still ranged from +1.69 to +2.82 dB over eight seed sets, so one draw cannot say whether a model is 0.3 dB above or
below a floor. This re-runs `train/eval_indi.py`'s evaluation at 1 step (the model's eps and eps 0) for ``--seed_sets``
disjoint sets of seeds (set k degrades crop i with seed k * crops + i; set 0 is the card's own draw) and reports the
mean gain and its standard error over the sets. With ``--tradeoff_steps N`` it also walks N steps and reports the
trade-off rule's numbers (LPIPS reduction and PSNR drop against 1 step) the same way: on one draw of 32 crops the
defocus model's reduction at 8 steps was 9.8 %, on eight draws 9.8-19.2 %.

    python -m research.floor_check --model model_cards/indi-defocus_deblur --task defocus_deblur \
        --data_dir data/photos/val --crop 256 --grid 2 --seed_sets 8 --tradeoff_steps 8 --threads 1 \
        --json model_cards/indi-defocus_deblur/floor_check.json

In a model repo, ``floor_check.json`` is read by ``train/make_model_card.py`` (the card states the floor, and the
trade-off rule where N is its recommended step count, as mean ± standard error: met / missed / within the noise) and
re-run by ``zoo/verify_zoo.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from train import eval_indi


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    parser.add_argument("--seed_sets", type=int, default=5, help="Disjoint sets of degradation seeds (default 5).")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument(
        "--tradeoff_steps",
        type=int,
        default=None,
        help="Also walk N steps in every set and report the trade-off rule's numbers there (LPIPS reduction and PSNR "
        "drop against 1 step); the card uses them when N is its recommended step count.",
    )
    args, eval_argv = parser.parse_known_args(argv)
    if args.seed_sets < 1:
        parser.error(f"--seed_sets must be >= 1, got {args.seed_sets}")
    if args.tradeoff_steps is not None and args.tradeoff_steps < 2:
        parser.error(f"--tradeoff_steps must be >= 2 (the rule compares N > 1 steps with 1), got {args.tradeoff_steps}")
    for owned in ("--steps", "--seed", "--eps", "--output_dir"):
        if owned in eval_argv:
            parser.error(f"{owned} is set by floor_check (1 step, the model's eps and 0, seed sets)")
    return args, eval_argv


def main(argv=None) -> dict:
    args, eval_argv = parse_args(argv)
    steps = ["1"] + ([str(args.tradeoff_steps)] if args.tradeoff_steps else [])
    base = eval_indi.parse_args([*eval_argv, "--steps", *steps, "--eps", "0", "--variation_images", "0"])
    base.bm3d, base.baseline_model = False, None  # reference methods: not part of the gain, and BM3D costs 8+ s a crop
    sets, crops = [], 0
    for k in range(args.seed_sets):
        base.seed = k * crops  # set k: seeds k * crops ... (k + 1) * crops - 1, disjoint from every other set
        result = eval_indi.evaluate(base)
        crops = len(result["images"])
        input_psnr = result["table"][0]["psnr"]
        rows = {(r["eps"], r["steps"]): r for r in result["table"] if r["method"] == "InDI"}
        eps0, one = rows[(0.0, 1)], rows[(result["model_eps"], 1)]
        sets.append(
            {
                "seed": base.seed,
                "input_psnr": input_psnr,
                "gain_db": result["gain_over_input_db_one_step"],
                "gain_db_eps0": eps0["psnr"] - input_psnr,
            }
        )
        line = (
            f"seeds {base.seed}-{base.seed + crops - 1}: input {input_psnr:.2f} dB, 1 step {sets[-1]['gain_db']:+.2f} "
            f"dB (eps 0: {sets[-1]['gain_db_eps0']:+.2f})"
        )
        if args.tradeoff_steps:
            walked = rows[(result["model_eps"], args.tradeoff_steps)]
            sets[-1]["lpips_reduction"] = 1.0 - walked["lpips"] / one["lpips"]
            sets[-1]["psnr_drop_db"] = one["psnr"] - walked["psnr"]
            line += (
                f"; {args.tradeoff_steps} steps: LPIPS {-100 * sets[-1]['lpips_reduction']:+.1f} %, PSNR "
                f"{-sets[-1]['psnr_drop_db']:+.2f} dB"
            )
        print(line, flush=True)
    summary = {
        "task": base.task,
        "setting": result["setting"],
        "model": base.model,
        "crops_per_set": crops,
        "seed_sets": args.seed_sets,
        "model_eps": result["model_eps"],
        "tradeoff_steps": args.tradeoff_steps,
        "sets": sets,
        "command": "python -m research.floor_check " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    for key in ("gain_db", "gain_db_eps0") + (("lpips_reduction", "psnr_drop_db") if args.tradeoff_steps else ()):
        values = np.array([s[key] for s in sets])
        summary[f"{key}_mean"] = float(values.mean())
        # standard error of the mean over the sets (undefined for one set)
        summary[f"{key}_sem"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    sem = summary["gain_db_sem"]
    print(
        f"mean over {args.seed_sets} sets of {crops} crops: 1 step {summary['gain_db_mean']:+.2f} dB"
        + (f" ± {sem:.2f} (standard error)" if sem is not None else "")
        + f"; eps 0: {summary['gain_db_eps0_mean']:+.2f} dB"
        + (
            f"; {args.tradeoff_steps} steps: LPIPS {-100 * summary['lpips_reduction_mean']:+.1f} %"
            + (f" ± {100 * summary['lpips_reduction_sem']:.1f}" if summary["lpips_reduction_sem"] is not None else "")
            + f", PSNR {-summary['psnr_drop_db_mean']:+.2f} dB"
            if args.tradeoff_steps
            else ""
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
