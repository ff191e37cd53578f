"""Detection: does `auto_restore.detect` find what a photo has, single and compound degradations, and nothing on
clean photos?

Each held-out photo (whole, as a visitor uploads it) is degraded by each case below with a known set of
degradations, and every bundled start estimator gives its verdict (present = a start above 0). The script prints,
per case, how often each task was found, and writes the confusion counts and the false-positive rate on clean
photos as JSON. It runs the estimators only (seconds), not the models.

    python -m benchmarks.detection --data_dir data/shared_photos/val --json docs/measurements/detection/detection.json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.timing import write_results
from indi_pipeline.auto_restore import CHAIN_ORDER, NAMES, detect, load_estimators
from indi_pipeline.degradations import defocus_blur, degradation_generator, jpeg_compress, motion_blur
from indi_pipeline.machine import cpu_model, threads_text
from train.data import load_clean_folder


def _noise(sigma: float):
    return lambda x, g: x + sigma / 255 * torch.randn(x.shape, generator=g)


def _jpeg(quality: int):
    return lambda x, g: jpeg_compress(x.clamp(0, 1), quality=quality)


def _defocus(radius: float):
    return lambda x, g: defocus_blur(x, radius=radius, generator=g)


def _shake(length: float):
    return lambda x, g: motion_blur(x, length_range=(length, length), generator=g)


def _then(*steps):
    def degrade(x, g):
        for step in steps:
            x = step(x, g)
        return x

    return degrade


# name: (degradation, the tasks truly present); compounds apply left to right (what happened to the photo first).
CASES = {
    "clean": (lambda x, g: x, set()),
    "noise 5/255": (_noise(5), {"denoise"}),
    "noise 15/255": (_noise(15), {"denoise"}),
    "noise 35/255": (_noise(35), {"denoise"}),
    "JPEG q30": (_jpeg(30), {"jpeg"}),
    "JPEG q70": (_jpeg(70), {"jpeg"}),
    "defocus r 1.5": (_defocus(1.5), {"defocus_deblur"}),
    "defocus r 4": (_defocus(4), {"defocus_deblur"}),
    "shake 6 px": (_shake(6), {"motion_deblur"}),
    "shake 15 px": (_shake(15), {"motion_deblur"}),
    "noise 15 then JPEG 60": (_then(_noise(15), _jpeg(60)), {"denoise", "jpeg"}),
    "defocus r 3 then noise 10": (_then(_defocus(3), _noise(10)), {"defocus_deblur", "denoise"}),
    "defocus r 3 then JPEG 40": (_then(_defocus(3), _jpeg(40)), {"defocus_deblur", "jpeg"}),
    "noise 10 then defocus r 2 then JPEG 50": (
        _then(_noise(10), _defocus(2), _jpeg(50)),
        {"denoise", "defocus_deblur", "jpeg"},
    ),
}


def run(photos: list[np.ndarray], estimators: dict) -> dict:
    tasks = [t for t in CHAIN_ORDER if t in estimators]
    rows = []
    for index, (name, (degrade, truth)) in enumerate(CASES.items()):
        found = {t: 0 for t in tasks}
        for k, photo in enumerate(photos):
            x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255  # a writable copy
            y = degrade(x, degradation_generator(1000 * index + k)).clamp(0, 1)
            for finding in detect(y, estimators):
                found[finding.task] += finding.present
        rows.append({"case": name, "truth": sorted(truth), "photos": len(photos), "found": found})
    clean = next(r for r in rows if r["case"] == "clean")
    return {
        "tasks": tasks,
        "cases": rows,
        "false_positive_rate_clean": {t: clean["found"][t] / clean["photos"] for t in tasks},
        # Over every case: how often a present degradation was missed, an absent one reported.
        "miss_rate": {
            t: _rate([(r["photos"] - r["found"][t], r["photos"]) for r in rows if t in r["truth"]]) for t in tasks
        },
        "false_alarm_rate": {
            t: _rate([(r["found"][t], r["photos"]) for r in rows if t not in r["truth"]]) for t in tasks
        },
    }


def _rate(pairs: list[tuple[int, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return sum(k for k, _ in pairs) / total if total else None


def format_table(result: dict) -> str:
    tasks = result["tasks"]
    lines = [
        "| case | truly present | " + " | ".join(f"found: {NAMES[t]}" for t in tasks) + " |",
        "|---|---|" + "---:|" * len(tasks),
    ]
    for row in result["cases"]:
        truth = ", ".join(NAMES[t] for t in row["truth"]) or "nothing"
        cells = []
        for t in tasks:
            share = f"{row['found'][t]}/{row['photos']}"
            cells.append(f"**{share}**" if t in row["truth"] else share)
        lines.append(f"| {row['case']} | {truth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="held-out clean photos")
    parser.add_argument("--max_images", type=int, default=None, help="at most this many photos (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    estimators = load_estimators()
    if not estimators:
        raise SystemExit("error: no bundled model repo has a start estimator")
    photos = load_clean_folder(args.data_dir, 64)[: args.max_images]
    result = {
        "machine": f"{cpu_model()}, {threads_text(args.threads)}, torch {torch.__version__}",
        "data_dir": args.data_dir,
        **run(photos, estimators),
    }
    print(format_table(result))
    print("false positives on clean photos:", result["false_positive_rate_clean"])
    print("miss rate (over the cases that have it):", result["miss_rate"])
    print("false alarms (over the cases that do not):", result["false_alarm_rate"])
    if args.json:
        write_results(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
