#!/usr/bin/env python
"""Paired comparison of floor checks: did a new model gain over a reference, draw by draw?

Two models' mean gains over 8 draws each carry a standard error of about 0.08 dB (the draws differ a lot), but the
same draw scores both models on the same blurs, so the per-draw difference is far less noisy (about 0.01-0.02 dB).
This pairs the sets of ``research/floor_check.py`` JSONs by seed and prints, for each JSON after the first, the mean
difference of its 1-step gain (and eps 0 gain) against the first with the standard error of the differences.

    python -m research.compare_floor_checks model_cards/indi-motion_deblur/floor_check.json \
        docs/measurements/zoo/motion_stage6_plain_floor_check.json \
        docs/measurements/zoo/motion_stage6_grown_floor_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# Where two floor checks must agree for their draws to be the same blurs of the same crops.
SAME_DRAWS_KEYS = ("task", "setting", "crops_per_set")
MEASURES = ("gain_db", "gain_db_eps0")


def paired_difference(reference: dict, other: dict, measure: str = "gain_db") -> dict:
    """Mean and standard error of ``other - reference`` over the seed sets both have."""
    for key in SAME_DRAWS_KEYS:
        if reference.get(key) != other.get(key):
            raise ValueError(
                f"not the same draws: {key} is {reference.get(key)!r} in one and {other.get(key)!r} in the other"
            )
    by_seed = {s["seed"]: s[measure] for s in reference["sets"]}
    differences = np.array([s[measure] - by_seed[s["seed"]] for s in other["sets"] if s["seed"] in by_seed])
    if len(differences) < 2:
        raise ValueError(f"the floor checks share {len(differences)} seed set(s); a standard error needs 2")
    return {
        "sets": len(differences),
        "mean": float(differences.mean()),
        "sem": float(differences.std(ddof=1) / np.sqrt(len(differences))),
        "higher_in": int((differences > 0).sum()),
        "differences": differences.tolist(),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", help="floor_check.json of the reference model")
    parser.add_argument("others", nargs="+", help="floor_check.json of each model to compare with it")
    args = parser.parse_args(argv)
    reference = json.loads(Path(args.reference).read_text())
    print(f"reference {args.reference}: 1 step {reference['gain_db_mean']:+.3f} ± {reference['gain_db_sem']:.3f} dB")
    print("\n| model | sets | 1 step gain | paired difference | higher in | eps 0: paired difference |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for path in args.others:
        other = json.loads(Path(path).read_text())
        try:
            diff = {measure: paired_difference(reference, other, measure) for measure in MEASURES}
        except ValueError as error:
            sys.exit(f"compare_floor_checks: {path} against {args.reference}: {error}")
        gain, eps0 = diff["gain_db"], diff["gain_db_eps0"]
        print(
            f"| {path} | {gain['sets']} | {other['gain_db_mean']:+.3f} ± {other['gain_db_sem']:.3f} | "
            f"{gain['mean']:+.3f} ± {gain['sem']:.3f} | {gain['higher_in']} of {gain['sets']} | "
            f"{eps0['mean']:+.3f} ± {eps0['sem']:.3f} |"
        )
        rows.append({"model": path, **diff})
    return rows


if __name__ == "__main__":
    main()
