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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.blind_restoration import as_jpeg_file
from benchmarks.timing import write_results
from indi_pipeline.auto_restore import BLUR_TASKS, CHAIN_ORDER, NAMES, chain_for, detect, load_estimators
from indi_pipeline.degradations import defocus_blur, degradation_generator, jpeg_compress, motion_blur
from indi_pipeline.machine import machine_line
from indi_pipeline.tasks import get_task
from train.data import load_clean_folder


@dataclass(frozen=True)
class Damage:
    """One degradation done to a photo: the task that undoes it, where the photo then sits on that task's path
    (the true t: sigma / sigma_max for noise; 1 for JPEG and blur, whose degraded image is the path's far end) and
    the degradation itself."""

    task: str
    true_t: float
    apply: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    jpeg_quality: int | None = None


def noise(sigma: float) -> Damage:
    sigma_max = get_task("denoise").sigma_max
    return Damage("denoise", sigma / 255 / sigma_max, lambda x, g: x + sigma / 255 * torch.randn(x.shape, generator=g))


def jpeg(quality: int) -> Damage:
    return Damage("jpeg", 1.0, lambda x, g: jpeg_compress(x.clamp(0, 1), quality=quality), quality)


def defocus(radius: float) -> Damage:
    return Damage("defocus_deblur", 1.0, lambda x, g: defocus_blur(x, radius=radius, generator=g))


def shake(length: float) -> Damage:
    return Damage("motion_deblur", 1.0, lambda x, g: motion_blur(x, length_range=(length, length), generator=g))


# name: the damages, in the order they were done to the photo.
CASES: dict[str, tuple[Damage, ...]] = {
    "clean": (),
    "noise 5/255": (noise(5),),
    "noise 15/255": (noise(15),),
    "noise 35/255": (noise(35),),
    "JPEG q30": (jpeg(30),),
    "JPEG q70": (jpeg(70),),
    "defocus r 1.5": (defocus(1.5),),
    "defocus r 4": (defocus(4),),
    "shake 6 px": (shake(6),),
    "shake 15 px": (shake(15),),
    "noise 15 then JPEG 60": (noise(15), jpeg(60)),
    "defocus r 3 then noise 10": (defocus(3), noise(10)),
    "defocus r 3 then JPEG 40": (defocus(3), jpeg(40)),
    "noise 10 then defocus r 2 then JPEG 50": (noise(10), defocus(2), jpeg(50)),
}


def damaged(x: torch.Tensor, damages: tuple[Damage, ...], generator: torch.Generator) -> torch.Tensor:
    """``x`` after each damage in turn, clamped to [0, 1]."""
    for damage in damages:
        x = damage.apply(x, generator)
    return x.clamp(0, 1)


def truth(damages: tuple[Damage, ...]) -> set[str]:
    return {d.task for d in damages}


def as_uploaded(y: torch.Tensor, damages: tuple[Damage, ...]):
    """``y`` as a visitor's file gives it: a JPEG (pixels and the tables it was saved with) where the last damage
    was a JPEG save, else the image itself."""
    if damages and damages[-1].jpeg_quality is not None:
        return as_jpeg_file(y, damages[-1].jpeg_quality)
    return y


def run(photos: list[np.ndarray], estimators: dict) -> dict:
    tasks = [t for t in CHAIN_ORDER if t in estimators]
    rows = []
    for index, (name, damages) in enumerate(CASES.items()):
        found = {t: 0 for t in tasks}
        for k, photo in enumerate(photos):
            y = damaged(photo_tensor(photo), damages, degradation_generator(1000 * index + k))
            for finding in detect(y, estimators):
                found[finding.task] += finding.present
        rows.append(case_row(name, damages, len(photos), found))
    return {"tasks": tasks, "cases": rows, **rates(rows, tasks)}


def photo_tensor(photo: np.ndarray) -> torch.Tensor:
    """A photo (H, W, 3 uint8) as a (1, 3, H, W) float tensor in [0, 1] (a writable copy)."""
    return torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255


def case_row(name: str, damages: tuple[Damage, ...], photos: int, found: dict) -> dict:
    return {"case": name, "truth": sorted(truth(damages)), "photos": photos, "found": found}


def rates(rows: list[dict], tasks: list[str]) -> dict:
    """The false-positive rate on clean photos, and per task the miss and false-alarm rates over the cases."""
    clean = next(r for r in rows if r["case"] == "clean")
    return {
        "false_positive_rate_clean": {t: clean["found"][t] / clean["photos"] for t in tasks},
        # Over every case: how often a present degradation was missed, an absent one reported.
        "miss_rate": {
            t: _rate([(r["photos"] - r["found"][t], r["photos"]) for r in rows if t in r["truth"]]) for t in tasks
        },
        "false_alarm_rate": {
            t: _rate([(r["found"][t], r["photos"]) for r in rows if t not in r["truth"]]) for t in tasks
        },
    }


# How a chain could pick its one blur when both estimators fire: `chain_for`'s rule and the larger-estimate rule.
BLUR_RULES = {
    "later start, defocus on a tie (chain_for)": lambda found: chain_for(found),
    "later start, larger estimate on a tie": lambda found: [max(found, key=lambda f: (f.start, f.estimate))],
}


def blur_choice(photos: list[np.ndarray], estimators: dict) -> dict:
    """Per blur case and rule: on how many photos with a blur found the rule picks the true blur's model."""
    counts: dict[str, dict[str, list[int]]] = {rule: {} for rule in BLUR_RULES}
    for index, (name, damages) in enumerate(CASES.items()):
        true_blur = [d.task for d in damages if d.task in BLUR_TASKS]
        if not true_blur:
            continue
        for k, photo in enumerate(photos):
            y = damaged(photo_tensor(photo), damages, degradation_generator(1000 * index + k))
            blurs = [f for f in detect(y, estimators) if f.task in BLUR_TASKS and f.present]
            if not blurs:
                continue
            for rule, pick in BLUR_RULES.items():
                right, seen = counts[rule].setdefault(name, [0, 0])
                counts[rule][name] = [right + (pick(blurs)[0].task == true_blur[0]), seen + 1]
    return counts


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
    parser.add_argument("--first_image", type=int, default=0, help="skip the photos before this one, sorted")
    parser.add_argument(
        "--blur_choice", action="store_true", help="instead: how often each rule picks the true blur's model"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    estimators = load_estimators()
    if not estimators:
        raise SystemExit("error: no bundled model repo has a start estimator")
    photos = load_clean_folder(args.data_dir, 64)[args.first_image :][: args.max_images]
    if args.blur_choice:
        counts = blur_choice(photos, estimators)
        for rule, cases in counts.items():
            print(f"{rule}: " + ", ".join(f"{case} {right}/{seen}" for case, (right, seen) in cases.items()))
        if args.json:
            write_results({"photos": len(photos), "first_image": args.first_image, "blur_choice": counts}, args.json)
        return 0
    result = {
        "machine": machine_line(args.threads),
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
