#!/usr/bin/env python
"""Writes a model repo's README.md (the Hub model card) from its evaluation and training records.

Nothing in a card is typed by hand: the numbers come from the `eval_*.json` files that `train/eval_indi.py` wrote
into the repo folder (and `floor_check.json` from `research/floor_check.py`), from `train_info.json` that
`train/train_indi.py` wrote, from the network's config and safetensors header, and from `speed.json`, which
`--measure_speed` writes by timing the network on this machine's CPU.

    python -m train.make_model_card model_cards/indi-denoise [--hub_org indi-zoo]
    python -m train.make_model_card --measure_speed model_cards/indi-denoise   # time it first (a quiet machine)
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from indi_pipeline import photo_mix
from indi_pipeline.machine import threads_text
from indi_pipeline.network import InDINet
from indi_pipeline.tasks import get_task
from train.grow_network import BLOCK_KEYS

# What each model was trained on, so users know when it will fail (design.md §4).
TRAINING_DEGRADATION = {
    "denoise": "additive white Gaussian noise y = x + σ·n, σ = 50/255, no clipping (InDI's path x_t = x + t·σ·n "
    "covers every lower σ too: see How to use)",
    "sr4": "4× bicubic downscaling (antialiased, as PIL `Image.resize(BICUBIC)`); the pipeline upsamples the "
    "low-resolution input with bicubic and walks from there",
    "jpeg": "PIL JPEG compression at a random quality in [10, 50] (one blind model, PIL's default settings: 4:2:0 "
    "chroma subsampling, standard tables)",
    "motion_deblur": "synthetic camera shake: random-walk trajectories (DeblurGAN / Boracchi & Foi style) 5–25 px "
    "long, rasterised as normalised kernels, plus Gaussian noise σ ≤ 2/255",
    "defocus_deblur": "antialiased disk (pillbox) blur of radius 1–6 px plus Gaussian noise σ ≤ 2/255",
}


def _range(bounds, unit: str = "") -> str:
    low, high = bounds
    return f"{low:g}–{high:g}{unit}"


# What `--degradation_mix photo` trains on instead (indi_pipeline/photo_mix.py), from its own constants.
PHOTO_MIX_DEGRADATION = {
    "denoise": "noise of RMS σ = 50/255 per image, white Gaussian, camera (shot + read noise in linear light) or "
    "correlated across channels",
    "sr4": TRAINING_DEGRADATION["sr4"],
    "jpeg": f"PIL JPEG at a random quality in [{_range(photo_mix.PHOTO_JPEG_QUALITY_RANGE).replace('–', ', ')}], "
    f"4:2:0 or 4:4:4 chroma, {100 * photo_mix.PHOTO_JPEG_DOUBLE_SHARE:.0f} % of the images saved twice",
    "motion_deblur": f"synthetic camera shake {_range(photo_mix.PHOTO_MOTION_LENGTH_RANGE, ' px')} long, plus "
    "Gaussian noise σ ≤ 2/255",
    "defocus_deblur": f"disk blur of radius {_range(photo_mix.PHOTO_DEFOCUS_RADIUS_RANGE, ' px')} or, for "
    f"{100 * photo_mix.PHOTO_DEFOCUS_GAUSSIAN_SHARE:.0f} % of the images, Gaussian blur of σ "
    f"{_range(photo_mix.PHOTO_DEFOCUS_GAUSSIAN_SIGMA_RANGE, ' px')}, plus Gaussian noise σ ≤ 2/255",
}


def trained_on_text(task_id: str, stages: list[dict]) -> str:
    """The degradations the stages trained on: the task's definition, the photo mix, or which stages had which."""
    photo = [n for n, s in enumerate(stages, 1) if s["args"].get("degradation_mix", "benchmark") == "photo"]
    if not photo or PHOTO_MIX_DEGRADATION[task_id] == TRAINING_DEGRADATION[task_id]:
        return TRAINING_DEGRADATION[task_id]
    if len(photo) == len(stages):
        return PHOTO_MIX_DEGRADATION[task_id]
    other = [n for n in range(1, len(stages) + 1) if n not in photo]

    def named(numbers: list[int]) -> str:
        if len(numbers) == 1:
            return f"stage {numbers[0]}"
        contiguous = numbers == list(range(numbers[0], numbers[-1] + 1))
        return f"stages {numbers[0]}–{numbers[-1]}" if contiguous else "stages " + ", ".join(map(str, numbers))

    return (
        f"{named(other)}: {TRAINING_DEGRADATION[task_id]}; {named(photo)} (photo mix): {PHOTO_MIX_DEGRADATION[task_id]}"
    )


FAILS_ON = {
    "denoise": "real camera noise (signal-dependent, spatially correlated, demosaicked), noise above σ = 50/255, "
    "and JPEG-compressed noisy images",
    "sr4": "images downscaled with other kernels (area, bilinear, blur + decimation), real low-quality photos with "
    "noise or compression, and scale factors other than 4",
    "jpeg": "quality below 10, repeated (multi-generation) compression, and other codecs (WebP, HEIC)",
    "motion_deblur": "spatially varying blur (object motion, rolling shutter, rotations), blur longer than 25 px and "
    "saturated highlights",
    "defocus_deblur": "radius above 6 px, depth-varying defocus (only one radius per image was seen) and strong noise",
}

# What a photo-mix model saw that the definition's did not: its failure cases shrink accordingly.
FAILS_ON_PHOTO_MIX = {
    "denoise": "noise above σ = 50/255, real sensor noise after demosaicking and denoising in the camera, and "
    "JPEG-compressed noisy images",
    "jpeg": "quality below 10, more than two saves, and other codecs (WebP, HEIC)",
}


def fails_on_text(task_id: str, stages: list[dict]) -> str:
    """Where the model is expected to fail, for what its last stage trained on."""
    if stages and stages[-1]["args"].get("degradation_mix", "benchmark") == "photo":
        return FAILS_ON_PHOTO_MIX.get(task_id, FAILS_ON[task_id])
    return FAILS_ON[task_id]


# The project's quality floors (the zoo issue): 1-step PSNR gain over the degraded input, per evaluation setting.
# Every card says whether its model meets them, so a model that misses one is shipped knowingly, never silently.
QUALITY_FLOORS_DB = {
    ("denoise", "sigma50"): 14.0,
    ("denoise", "sigma25"): 11.0,
    ("sr4", "default"): 0.5,
    ("jpeg", "q10"): 0.7,
    ("motion_deblur", "default"): 3.0,
    ("defocus_deblur", "default"): 2.0,
}

CITATION = """@article{delbracio2023indi,
  title   = {Inversion by Direct Iteration: An Alternative to Denoising Diffusion for Image Restoration},
  author  = {Delbracio, Mauricio and Milanfar, Peyman},
  journal = {Transactions on Machine Learning Research},
  year    = {2023},
  url     = {https://openreview.net/forum?id=VmyFF5lL3F}
}"""

# What each prepared photo folder is (train/prepare_data.py writes them); sources and licences: train/DATA.md.
TRAINING_PHOTOS = {
    "data/photos/train": "29 free-licensed Debian wallpaper photos, downscaled 2–4× (8 more held out)",
    "data/shared_photos/train": "365 varied free-licensed photos, long side 512 px (41 more held out: "
    "`train/shared_photos_split.json`)",
}


def data_text(stages: list[dict]) -> str:
    """What the stages trained on, from each one's --train_data_dir: one source, or the stages of each."""
    sources = [
        TRAINING_PHOTOS.get(folder, f"the photos of `{folder}`")
        for folder in (s["args"].get("train_data_dir") or "data/photos/train" for s in stages)
    ]
    groups: list[tuple[list[int], str]] = []
    for number, source in enumerate(sources, 1):
        if groups and groups[-1][1] == source:
            groups[-1][0].append(number)
        else:
            groups.append(([number], source))
    if len(groups) == 1:
        text = groups[0][1]
    else:
        named = [f"stage {n[0]}" if len(n) == 1 else f"stages {n[0]}–{n[-1]}" for n, _ in groups]
        text = "; ".join(f"{name}: {source}" for name, (_, source) in zip(named, groups))
    return f"{text}. Sources and licences: the project's `train/DATA.md`."


# Where the library is installed from (pyproject.toml [project.urls] Homepage: the Space's git repository).
PROJECT_URL = "https://huggingface.co/spaces/indi-zoo/indi-restoration"
PAPER_URL = "https://arxiv.org/abs/2303.11435"

# speed.json in a repo: the network's forward time on a named CPU, measured by `--measure_speed` (measure_speed below).
SPEED_FILE = "speed.json"
SPEED_SIZE = 512
SPEED_THREADS = 2
# Runs repeat until two in a row agree this closely: other work on a shared CPU slows single runs.
SPEED_AGREEMENT = 0.10
# Each run waits (up to SPEED_WAIT_S) until the other work on the machine takes at most this share of the CPU.
SPEED_QUIET_BUSY = 0.15
SPEED_WAIT_S = 900.0


def cpu_busy_fraction(seconds: float = 2.0) -> float | None:
    """The share of all cores' time that was not idle over ``seconds`` (Linux /proc/stat; None elsewhere)."""
    import time

    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat", encoding="utf-8") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all

    try:
        idle, total = idle_and_total()
        time.sleep(seconds)
        idle_after, total_after = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_after - total
    return round(1.0 - (idle_after - idle) / elapsed, 3) if elapsed else None


def wait_for_quiet_cpu(max_busy: float = SPEED_QUIET_BUSY, wait_s: float = SPEED_WAIT_S) -> float | None:
    """Waits until other work takes at most ``max_busy`` of the CPU, or ``wait_s`` has passed; returns the last share."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        busy = cpu_busy_fraction()
        if busy is None or busy <= max_busy or time.monotonic() >= deadline:
            return busy


def measure_speed(
    folder: Path,
    threads: int = SPEED_THREADS,
    repeats: int = 5,
    max_runs: int = 6,
    wait_s: float = SPEED_WAIT_S,
    log=print,
) -> dict:
    """The repo network's ms per SPEED_SIZE² forward on this CPU, as speed.json records it.

    Each run is one `indi bench` (benchmarks.bench.run_bench: the median of ``repeats`` timed forwards after a warm-up,
    in the faster memory format), started once the CPU is quiet (wait_for_quiet_cpu); runs repeat until two in a row
    agree within SPEED_AGREEMENT, or ``max_runs``, and the record is the median of all runs, with each run's CPU
    share taken by other work just before it and its load averages."""
    import statistics

    from benchmarks.bench import run_bench

    log = log or (lambda message: None)
    runs, agreed = [], False
    for _ in range(max_runs):
        busy = wait_for_quiet_cpu(wait_s=wait_s)
        result = run_bench(model=str(folder), sizes=(SPEED_SIZE,), steps=1, repeats=repeats, threads=threads, log=None)
        forward = result["forward"][0]
        runs.append(
            {
                "ms": forward["ms"],
                "memory_format": forward["best_memory_format"],
                "cpu_busy_before": busy,
                "load_average_start": result["machine"]["load_average_start"],
                "load_average_end": result["machine"]["load_average_end"],
            }
        )
        log(
            f"{folder.name}: {forward['ms']:.1f} ms (CPU busy before: {busy}, load {result['machine']['load_average_start']})"
        )
        if len(runs) >= 2:
            last, previous = runs[-1]["ms"], runs[-2]["ms"]
            if abs(last - previous) <= SPEED_AGREEMENT * min(last, previous):
                agreed = True
                break
    machine = result["machine"]
    return {
        "size": SPEED_SIZE,
        "forward_ms": round(statistics.median(run["ms"] for run in runs), 1),
        "cpu": machine["cpu"],
        "cpu_count": machine["cpu_count"],
        "threads": threads,
        "torch": machine["torch"],
        "repeats_per_run": repeats,
        "two_runs_agreed_within": SPEED_AGREEMENT if agreed else None,
        "runs": runs,
        "command": f"python -m train.make_model_card --measure_speed {folder.as_posix()}",
    }


def load_evaluations(folder: Path) -> list[dict]:
    evaluations = [json.loads(p.read_text()) for p in sorted(folder.glob("eval_*.json"))]
    if not evaluations:
        raise SystemExit(f"error: no eval_*.json in {folder}; run train/eval_indi.py first")
    return evaluations


def primary_evaluation(evaluations: list[dict]) -> dict:
    """The operating point the card leads with: the hardest default setting (sigma 50, JPEG q10, or the only one)."""
    preferred = {"sigma50", "q10", "default"}
    return next((e for e in evaluations if e["setting"] in preferred), evaluations[0])


def evaluation_crops(evaluation: dict) -> str:
    """'8 held-out photos (256 px centre crops)', or with a grid '8 held-out photos, 2×2 crops of 256 px each (32)'."""
    grid, crops = evaluation.get("grid", 1), len(evaluation["images"])
    if grid == 1:
        return f"{crops} held-out photos ({evaluation['crop']} px centre crops)"
    return f"{crops // grid**2} held-out photos, {grid}×{grid} crops of {evaluation['crop']} px each ({crops} crops)"


# The Hub's model-index names each evaluation's photos: (name, type) by the evaluation's --data_dir.
EVALUATION_PHOTOS = {
    "data/photos/val": ("Debian wallpaper photos", "debian-wallpaper-photos-val"),
    "data/shared_photos/val": ("varied free-licensed photos", "indi-shared-photos-val"),
}


def evaluation_photos(evaluation: dict) -> tuple[str, str]:
    folder = str(evaluation.get("data_dir", "data/photos/val")).rstrip("/")
    return EVALUATION_PHOTOS.get(folder, (f"the photos of {folder}", Path(folder).name or "photos"))


def eval_results(evaluations: list[dict], task_id: str) -> list[EvalResult]:
    results = []
    for evaluation in evaluations:
        name, dataset_type = evaluation_photos(evaluation)
        dataset = f"{name}, {evaluation_crops(evaluation)}"
        for label, row in (
            ("1 step", evaluation["one_step"]),
            (f"{evaluation['recommended_steps']} steps", evaluation["recommended"]),
        ):
            # PSNR only: the Hub's widget shows the index; LPIPS and the rest are in the card's tables.
            for metric, value in (("psnr", row["psnr"]),):
                results.append(
                    EvalResult(
                        task_type="image-to-image",
                        task_name=f"{task_id} ({evaluation['setting']})",
                        dataset_type=dataset_type,
                        dataset_name=dataset,
                        metric_type=metric,
                        metric_value=round(float(value), 4),
                        metric_name=f"{metric.upper()} ({evaluation['setting']}, {label})",
                    )
                )
    return results


def is_model_row(row: dict, evaluation: dict, steps: int) -> bool:
    return row["method"] == "InDI" and row["steps"] == steps and row["eps"] == evaluation["model_eps"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, one space around each cell so that the raw card reads as a table too."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    return "\n".join([line(header), "|---" * len(header) + "|", *map(line, rows)])


EVALUATION_COLUMNS = ["method", "steps", "eps", "PSNR (dB) ↑", "SSIM ↑", "LPIPS ↓", "sharpness"]


def table_markdown(evaluation: dict, compact: bool = False) -> str:
    """The evaluation's table; ``compact`` keeps the references, 1 step and the recommended steps (the full sweep
    and the seconds per image stay in eval_<setting>.json), so a card with several settings stays short. Where every
    InDI row walks with one eps, the steps header names it instead of an eps column."""
    kept = {1, evaluation["recommended_steps"]}
    table = [
        row
        for row in evaluation["table"]
        if not (compact and row["steps"] is not None and not any(is_model_row(row, evaluation, n) for n in kept))
    ]
    walk_eps = {row["eps"] for row in table if row["steps"] is not None}
    one_eps = len(walk_eps) == 1 and None not in walk_eps
    columns = list(EVALUATION_COLUMNS)
    if one_eps:
        columns.remove("eps")
        columns[1] = f"steps (eps {next(iter(walk_eps)):g})"
    rows = []
    for row in table:
        bold = "**" if is_model_row(row, evaluation, evaluation["recommended_steps"]) else ""
        eps = [] if one_eps else ["" if row["eps"] is None else f"{row['eps']:g}"]
        rows.append(
            [
                f"{bold}{row['method']}{bold}",
                "" if row["steps"] is None else row["steps"],
                *eps,
                f"{row['psnr']:.2f}",
                f"{row['ssim']:.4f}",
                f"{row['lpips']:.4f}",
                f"{row['sharpness']:.3f}",
            ]
        )
    return markdown_table(columns, rows)


TRADE_OFF_LPIPS_REDUCTION = 0.10  # the project's rule: some N > 1 lowers LPIPS this much, PSNR within 1 dB
# Stated once above a card's evaluations; each evaluation's sentence then says whether it is met.
TRADE_OFF_RULE = (
    f"Trade-off rule: some N > 1 steps lower LPIPS by at least {100 * TRADE_OFF_LPIPS_REDUCTION:.0f} % from 1 step, "
    "PSNR within 1 dB."
)


def psnr_change_text(drop: float) -> str:
    return f"{abs(drop):.2f} dB {'lower' if drop >= 0 else 'higher'}"


def trade_off_sentence(evaluation: dict, repeated: dict | None = None) -> str:
    """The rule at the recommended steps: on the table's draw, or where ``repeated`` (a floor_check.json of this
    setting, run with --tradeoff_steps at the recommended steps) has them, by the mean over its draws (the table
    beside the sentence shows the first draw's numbers: the sentence does not repeat them)."""
    rule = "the trade-off rule is "
    steps = evaluation["recommended_steps"]
    if steps == 1:
        return (
            "No step count above 1 lowered LPIPS while keeping PSNR within 1 dB of one step: for this model, "
            "1 step is recommended and more steps do not add realistic detail (see Limitations). The trade-off rule "
            "is not met."
        )
    reduction, drop = evaluation["lpips_reduction_vs_one_step"], evaluation["psnr_drop_vs_one_step"]
    repeated = floor_check_for(evaluation, repeated)
    if not (repeated and repeated.get("tradeoff_steps") == steps):
        return (
            f"Recommended {steps} steps: LPIPS {100 * reduction:.1f} % lower than 1 step, PSNR "
            f"{psnr_change_text(drop)}; " + rule + ("met." if reduction >= TRADE_OFF_LPIPS_REDUCTION else "not met.")
        )
    mean, sem = repeated["lpips_reduction_mean"], repeated["lpips_reduction_sem"]
    verdict = verdict_against(TRADE_OFF_LPIPS_REDUCTION, mean, sem)
    if repeated["psnr_drop_db_mean"] > 1.0:
        verdict = "missed"
    spread = f" ± {100 * sem:.1f}" if sem is not None else ""
    return (
        f"Recommended {steps} steps, mean{' ± s.e.' if sem is not None else ''} over {repeated['seed_sets']} draws "
        f"(`{FLOOR_CHECK_FILE}`): LPIPS {100 * mean:.1f}{spread} % lower than 1 step, PSNR "
        f"{psnr_change_text(repeated['psnr_drop_db_mean'])}; "
        + rule
        + {
            "met": "met.",
            "missed": "not met.",
            "within noise": f"met only within the noise: {100 * TRADE_OFF_LPIPS_REDUCTION:.0f} % lies within two "
            "standard errors of the mean.",
        }[verdict]
    )


# research/floor_check.py's output in a repo: the 1-step gain over several disjoint draws of the degradations. Where a
# floor is close, one draw cannot say which side of it a model lies (the defocus gain ranged 1.1 dB over 8 draws).
FLOOR_CHECK_FILE = "floor_check.json"


def floor_check_for(evaluation: dict, repeated: dict | None) -> dict | None:
    """``repeated`` (a floor_check.json) where it was measured on this evaluation's setting, else None."""
    return repeated if repeated and repeated["setting"] == evaluation["setting"] else None


def verdict_against(threshold: float, estimate: float, sem: float | None) -> str:
    """'met' (estimate >= threshold), 'missed', or with a standard error, 'within noise' when the threshold lies within
    two standard errors of the estimate (then neither side is clear)."""
    if sem is None:
        return "met" if estimate >= threshold else "missed"
    if estimate - 2 * sem >= threshold:
        return "met"
    return "missed" if estimate + 2 * sem < threshold else "within noise"


@dataclass
class FloorCheck:
    """One evaluation setting's quality floor against the model's 1-step gain: the card's draw of the degradations,
    and where the repo has a floor_check.json for that setting, the mean and standard error over several draws."""

    setting: str
    floor: float
    gain: float
    repeated: dict | None = None

    @property
    def estimate(self) -> float:
        return self.repeated["gain_db_mean"] if self.repeated else self.gain

    @property
    def verdict(self) -> str:
        """'met', 'missed', or 'within noise' (the floor lies within two standard errors of the mean gain)."""
        return verdict_against(self.floor, self.estimate, (self.repeated or {}).get("gain_db_sem"))

    def repeated_text(self) -> str:
        r = self.repeated
        if r["gain_db_sem"] is None:  # one set: the table's own draw again
            return f"{r['gain_db_mean']:+.2f} dB (`{FLOOR_CHECK_FILE}`: one draw of {r['crops_per_set']} crops, the table's)"
        return (
            f"{r['gain_db_mean']:+.2f} ± {r['gain_db_sem']:.2f} dB (mean ± s.e. over {r['seed_sets']} draws of "
            f"{r['crops_per_set']} crops, `{FLOOR_CHECK_FILE}`)"
        )


def load_floor_check(folder: Path, evaluations: list[dict]) -> dict | None:
    """The repo's floor_check.json, checked against its evaluation: the first seed set is the evaluation's own draw, so
    the two must agree, or the file was measured on other weights or crops."""
    path = folder / FLOOR_CHECK_FILE
    if not path.exists():
        return None
    check = json.loads(path.read_text())
    evaluation = next((e for e in evaluations if e["setting"] == check["setting"]), None)
    if evaluation is None:
        raise ValueError(f"{path}: no eval_{check['setting']}.json in {folder} to go with it")
    first, card = check["sets"][0], evaluation["gain_over_input_db_one_step"]
    if first["seed"] != evaluation["seed"] or abs(first["gain_db"] - card) > 0.005:
        raise ValueError(
            f"{path} is stale: its first seed set (seed {first['seed']}) gains {first['gain_db']:+.3f} dB, "
            f"eval_{check['setting']}.json (seed {evaluation['seed']}) {card:+.3f} dB; they must be the same "
            "draw: re-run research/floor_check.py on these weights"
        )
    return check


def floor_checks(evaluations: list[dict], task_id: str, repeated: dict | None = None) -> list[FloorCheck]:
    """Every evaluation that has a quality floor, with ``repeated`` (a floor_check.json) for its own setting."""
    checks = []
    for evaluation in evaluations:
        floor = QUALITY_FLOORS_DB.get((task_id, evaluation["setting"]))
        if floor is not None:
            checks.append(
                FloorCheck(
                    evaluation["setting"],
                    floor,
                    evaluation["gain_over_input_db_one_step"],
                    floor_check_for(evaluation, repeated),
                )
            )
    return checks


def floor_sentences(evaluations: list[dict], task_id: str, repeated: dict | None = None) -> list[str]:
    """One line per setting with a floor: the floor, the gain it is judged by (the mean over floor_check.json's draws
    where there is one: the table shows the first draw's) and the verdict."""
    lines = []
    for check in floor_checks(evaluations, task_id, repeated):
        where = "" if check.setting == "default" else f" for {check.setting}"
        gain = f"{check.gain:+.2f} dB" if check.repeated is None else check.repeated_text()
        verdict = {
            "met": "meets it",
            "missed": f"**misses it by {check.floor - check.estimate:.2f} dB** (see Limitations)",
            "within noise": "**is at the floor only within the noise**: the floor lies within two standard errors "
            "of the mean, not a clear pass (see Limitations)",
        }[check.verdict]
        lines.append(
            f"- Quality floor{where}: {check.floor:+.1f} dB over the input at 1 step; this model gains {gain} "
            f"and {verdict}."
        )
    return lines


def improvement_over_input(evaluation: dict) -> str:
    """Where the model beats the degraded input, in numbers: the step counts that beat it on PSNR and LPIPS both, else
    the best of each (a weak model may gain PSNR at 1 step but only lower LPIPS with more steps)."""
    source, *rows = evaluation["table"]
    rows = [r for r in rows if r["method"] == "InDI" and r["eps"] == evaluation["model_eps"]]
    both = [r["steps"] for r in rows if r["psnr"] > source["psnr"] and r["lpips"] < source["lpips"]]
    if both:
        steps = ", ".join(map(str, both))
        return f"it beats the input on PSNR and LPIPS at once at {steps} step{'s' if both != [1] else ''}"
    best_psnr, best_lpips = max(rows, key=lambda r: r["psnr"]), min(rows, key=lambda r: r["lpips"])
    parts = []
    if best_psnr["psnr"] > source["psnr"]:
        parts.append(f"{best_psnr['psnr'] - source['psnr']:+.2f} dB PSNR at {best_psnr['steps']} step(s)")
    if best_lpips["lpips"] < source["lpips"]:
        parts.append(f"LPIPS {best_lpips['lpips']:.3f} against {source['lpips']:.3f} at {best_lpips['steps']} steps")
    return (
        "it improves on the input, though not on PSNR and LPIPS at the same step count: " + "; ".join(parts)
        if parts
        else "it does not improve on the input"
    )


def floor_limitations(
    evaluations: list[dict], task_id: str, repeated: dict | None = None, stages: list[dict] | None = None
) -> list[str]:
    """Limitations lines for floors missed or met only within the noise; with the training ``stages``, a miss says
    what they tried (a card must not promise that more of the same will beat it when its stages say otherwise)."""
    checks = floor_checks(evaluations, task_id, repeated)
    misses = [c for c in checks if c.verdict == "missed"]
    close = [c for c in checks if c.verdict == "within noise"]
    if not misses and not close:
        return []
    main = primary_evaluation(evaluations)
    # The card's table shows 1 and the recommended steps; the step counts named here may be others: their file.
    why = f"published because {improvement_over_input(main)} (`eval_{main['setting']}.json`)"

    def named(check: FloorCheck, text: str) -> str:
        return ("" if check.setting == "default" else f"{check.setting} ") + text

    lines = []
    if misses:
        short = ", ".join(named(c, f"by {c.floor - c.estimate:.2f} dB") for c in misses)
        tried = (
            (f" {tried_text(stages)} Left to try: a larger network within the speed budget, trained far longer.")
            if stages
            else ""
        )
        lines.append(f"- Below the quality floor ({short}): {why}.{tried}")
    if close:
        near = ", ".join(
            named(c, f"{c.estimate:+.2f} ± {c.repeated['gain_db_sem']:.2f} dB against {c.floor:+.1f} dB") for c in close
        )
        lines.append(
            f"- At the quality floor only within the noise of the evaluation ({near}): {why}, "
            "until a longer training run clears the floor by more than the noise."
        )
    return lines


def training_stages(info: dict) -> list[dict]:
    """The runs that made the weights, first run first: a fine-tune's train_info.json nests its base's record."""
    stages = []
    while info is not None:
        stages.insert(0, info)
        info = info.get("init_from_train_info")
    return stages


def spacing_text(scheduler: dict) -> str:
    """How inference spaces its steps in t where the repo's scheduler config (which the evaluation above used) differs
    from InDIScheduler's default of equal steps; "" for the default."""
    if scheduler.get("timestep_spacing") == "power":
        return (
            f"Inference steps are spaced t_i = (1 - i/N)^{scheduler['spacing_power']:g}, closer together near "
            "t = 0 (the repo's scheduler config, as evaluated above)."
        )
    return ""


def concurrent_runs(info: dict) -> int:
    """How many training runs shared the device. Records from before the field: train_zoo.sh ran all five zoo tasks."""
    if "concurrent_runs" in info:
        return info["concurrent_runs"]
    return 5 if "train_zoo.sh" in info["command"] else 1


LOSS_TEXT = {
    "l1": "L1 loss",
    "l2": "L2 (MSE) loss",
    "psnr": "PSNR loss (minus each image's PSNR, averaged)",
    "nmse": "input-normalised MSE loss (MSE over the degraded input's)",
}


def loss_code(args: dict) -> str:
    """A stage's --loss as its card writes it (runs recorded before the flag existed trained with L1)."""
    return args.get("loss") or "l1"


def loss_text(loss: str | None) -> str:
    """How a card names train_indi's --loss (runs recorded before the flag existed trained with L1)."""
    return LOSS_TEXT.get(loss or "l1", f"{loss} loss")


def stage_blocks(info: dict | None) -> dict:
    """A stage's block counts: its own flags, else its base's (a fine-tune keeps its base's net), else InDINet's."""
    if info is None:
        defaults = inspect.signature(InDINet.__init__).parameters
        return {
            key: tuple(defaults[key].default) if key != "middle_blocks" else defaults[key].default for key in BLOCK_KEYS
        }
    inherited = stage_blocks(info.get("init_from_train_info"))
    given = {key: info["args"].get(key) for key in BLOCK_KEYS}
    return {
        key: inherited[key] if value is None else (tuple(value) if isinstance(value, list) else value)
        for key, value in given.items()
    }


def grown_text(info: dict) -> str:
    """What a fine-tune added to its base network (train_indi.py --init_from with more blocks: grow_network.py)."""
    if not info["args"].get("init_from"):
        return ""
    before, after = stage_blocks(info.get("init_from_train_info")), stage_blocks(info)
    if after == before:
        return ""
    # By block count: the Model details table lays out the final network's blocks.
    return f", grown from {block_count(before)} to {block_count(after)} blocks (new ones start as identities)"


def t_sampling_cell(args: dict) -> str:
    """p(t) in a stage table cell: "uniform", or "t = 1 at w" for the mixture (the legend under the table says)."""
    if args["t_sampling"] == "mixture":
        return f"t = 1 at {args['t_one_probability']:g}"
    return args["t_sampling"]


def stage_notes(info: dict, task_id: str) -> str:
    """What a stage's row cannot show in its columns: another task, a grown network, a degradation mix."""
    notes = []
    if info.get("task", task_id) != task_id:  # the motion model starts from the defocus model: say which
        notes.append(f"{info['task']} task")
    grown = grown_text(info)
    if grown:
        notes.append(grown.removeprefix(", "))
    if (
        info["args"].get("degradation_mix", "benchmark") != "benchmark"
    ):  # runs before the flag trained on the definition
        notes.append(f"{info['args']['degradation_mix']} degradation mix (train/README.md)")
    return "; ".join(notes)  # a resumed run's minutes count the whole run; train_info.json says where it resumed


def stage_cells(number: int, info: dict, task_id: str) -> list[str]:
    """One training run as the cells of a stage table row (its train_info.json record holds the rest)."""
    args = info["args"]
    runs = concurrent_runs(info)
    return [
        str(number),
        info["device"] + (f", 1 of {runs} runs" if runs > 1 else ""),  # runs sharing the device
        f"{info['wall_seconds'] / 60:.1f}",  # steps: train_info.json
        loss_code(args),
        f"{args['learning_rate']:g}",
        t_sampling_cell(args),
        f"{args['eps']:g}" if args.get("eps") is not None else "",
        f"{args['train_batch_size']} × {args['resolution']} px",
        stage_notes(info, task_id),
    ]


STAGE_COLUMNS = ["stage", "hardware", "min", "`--loss`", "lr", "p(t)", "eps", "batch × crop", "notes"]


def shown_stages(stages: list[dict], first: int = 1) -> list[tuple[int, dict]]:
    """The stages a card's table lists, numbered: from ``first`` on (a base model's stages are rows of its card)."""
    return [(number, stage) for number, stage in enumerate(stages, 1) if number >= first]


def common_eps(stages: list[dict], first: int = 1) -> str | None:
    """The eps every listed stage trained with, as the table would write it; None where they differ."""
    values = {stage["args"].get("eps") for _, stage in shown_stages(stages, first)}
    return f"{values.pop():g}" if len(values) == 1 and None not in values else None


def stage_table(stages: list[dict], task_id: str, first: int = 1) -> str:
    """The training runs from stage ``first`` on, one row each; the notes column only where a stage has a note, the
    eps column only where the stages differ (else the legend names it)."""
    rows = [stage_cells(number, stage, task_id) for number, stage in shown_stages(stages, first)]
    one_eps = common_eps(stages, first)
    keep = [
        i
        for i, column in enumerate(STAGE_COLUMNS)
        if not (column == "eps" and one_eps) and not (column == "notes" and not any(r[i] for r in rows))
    ]
    return markdown_table([STAGE_COLUMNS[i] for i in keep], [[row[i] for i in keep] for row in rows])


def training_legend(stages: list[dict], scheduler: dict, first: int = 1) -> str:
    """The one paragraph under the stage table: what its rows share, the loss codes and p(t) notation it uses, the
    inference spacing where it is not the default, and where the exact commands are."""
    codes = dict.fromkeys(loss_code(s["args"]) for s in stages)
    one_eps = common_eps(stages, first)
    parts = [
        ("Each stage fine-tunes the one before: " if len(stages) > 1 else "")
        + f"AdamW, warm-up then cosine, loss{'es' if len(stages) > 1 else ''} on the predicted clean image",
        # A code that is its loss's name ("l1": L1 loss) needs no gloss.
        *(f"{code} = {loss_text(code)}" for code in codes if loss_text(code).lower() != f"{code} loss"),
        f"eps (path noise, {scheduler['noise_schedule']} schedule) {one_eps} in every row"
        if one_eps
        else f"eps: path noise, {scheduler['noise_schedule']} schedule",
        '"t = 1 at w": uniform t mixed with t = 1 at weight w'
        if any(s["args"]["t_sampling"] == "mixture" for s in stages)
        else "",
    ]
    sentences = [
        "; ".join(part for part in parts if part) + ".",
        spacing_text(scheduler),
        "Exact commands: `train_info.json`.",
    ]
    return " ".join(sentence for sentence in sentences if sentence)


def tried_text(stages: list[dict]) -> str:
    """What the stages tried, in one sentence: losses, p(t), eps and the networks (the card's "A short training" line
    gives their minutes)."""

    def listed(values, last: str = "and") -> str:  # distinct values in first-seen order ("" for none)
        distinct = list(dict.fromkeys(values))
        return ", ".join(distinct[:-1]) + f" {last} {distinct[-1]}" if len(distinct) > 1 else "".join(distinct)

    losses = listed(loss_code(s["args"]) for s in stages)  # the codes of the stage table and legend
    weights = [s["args"]["t_one_probability"] for s in stages if s["args"]["t_sampling"] == "mixture"]
    uniform = any(s["args"]["t_sampling"] == "uniform" for s in stages)
    # The stage table above has each value: written as the stage table's p(t) column does, networks by block count.
    weight = f"t = 1 at {listed((f'{w:g}' for w in sorted(weights)), 'or')}" if weights else ""
    p_t = [f"uniform and {weight}" if uniform else weight] if weights else ["uniform"] if uniform else []
    others = sorted({s["args"]["t_sampling"] for s in stages} - {"mixture", "uniform"})
    eps = listed(f"{s['args']['eps']:g}" for s in stages if s["args"].get("eps") is not None)
    blocks = list(dict.fromkeys(block_count(stage_blocks(s)) for s in stages))
    network = (
        f"a {blocks[0]}-block network"
        if len(blocks) == 1
        else f"a network grown from {blocks[0]} to {blocks[-1]} blocks"
    )
    parts = [f"{losses} losses", f"p(t) {listed(p_t + others)}", f"eps {eps}" if eps else "", network]
    return f"Its stages above tried {'; '.join(part for part in parts if part)}."


def block_count(blocks: dict) -> int:
    """NAFNet blocks in all: encoder, middle and decoder."""
    return sum(sum(v) if isinstance(v, (list, tuple)) else v for v in blocks.values())


def total_training_text(stages: list[dict]) -> str:
    """How long the training was: "8 min on NVIDIA H200", or for several stages the minutes on GPUs and on CPUs."""
    if len(stages) == 1:
        return f"{stages[0]['wall_seconds'] / 60:.0f} min on {stages[0]['device']}"
    gpu = sum(s["wall_seconds"] for s in stages if not s["device"].lower().startswith("cpu")) / 60
    cpu = sum(s["wall_seconds"] for s in stages if s["device"].lower().startswith("cpu")) / 60
    return f"{len(stages)} stages: {gpu:.0f} min on GPUs, {cpu:.0f} min on CPUs"


def base_model(stages: list[dict], task_id: str) -> tuple[str, int] | None:
    """(task, stages) where the record says a model was fine-tuned from another task's model: its first stages
    trained that task (the motion model started from the defocus model), else None."""
    before = 0
    while before < len(stages) and stages[before].get("task", task_id) != task_id:
        before += 1
    return (stages[before - 1]["task"], before) if before else None


WEIGHTS_FILE = Path("unet") / "diffusion_pytorch_model.safetensors"
SAFETENSORS_DTYPES = {"F16": "fp16", "BF16": "bf16", "F32": "fp32"}


def weights_record(folder: Path) -> tuple[int, list[str], int]:
    """(file size in bytes, dtypes, parameters stored) of the repo's network weights, from the safetensors header
    (8 bytes of length, then JSON with each tensor's dtype and shape): nothing is loaded."""
    path = folder / WEIGHTS_FILE
    with path.open("rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    tensors = [value for key, value in header.items() if key != "__metadata__"]
    dtypes = sorted({SAFETENSORS_DTYPES.get(t["dtype"], t["dtype"]) for t in tensors})
    return path.stat().st_size, dtypes, sum(math.prod(t["shape"]) for t in tensors)


def parameter_count(unet_config: dict) -> int:
    """InDINet's parameters for a config, counted on a network built on the meta device (no memory, no weights)."""
    import torch

    with torch.device("meta"):
        net = InDINet(**{key: value for key, value in unet_config.items() if not key.startswith("_")})
    return sum(parameter.numel() for parameter in net.parameters())


def load_speed(folder: Path) -> dict | None:
    path = folder / SPEED_FILE
    return json.loads(path.read_text()) if path.exists() else None


def hub_link(repo_id: str) -> str:
    return f"[{repo_id}](https://huggingface.co/{repo_id})"


def details_table(folder: Path, task, unet: dict, base: tuple[str, int] | None) -> str:
    """The Model details block: what the network is, its size and speed, and (``base``: repo id and how many of the
    first stages trained it) where it came from."""
    size, dtypes, stored = weights_record(folder)
    parameters = parameter_count(unet)
    if stored != parameters:  # the card would describe another network than the weights
        raise ValueError(f"{folder / WEIGHTS_FILE} holds {stored} values, unet/config.json builds {parameters}")
    multiple = InDINet.input_multiple_of(unet.get("unshuffle", 2), len(unet["encoder_blocks"]))
    rows = [
        ("Task", f"{task.title} (`{task.task_id}`)"),
        (
            "Network",
            # The block layout per level is in unet/config.json; the card gives the total.
            f"InDINet (NAFNet-style, time-conditioned): width {unet['width']}, "
            f"{block_count({key: unet[key] for key in BLOCK_KEYS})} blocks (`unet/config.json`)",
        ),
        ("Parameters", f"{parameters / 1e6:.2f} M"),
        ("Weights", f"{size / 1e6:.1f} MB, {' and '.join(dtypes)} safetensors"),
    ]
    speed = load_speed(folder)
    if speed:
        rows.append(
            (
                "Speed",
                f"{speed['forward_ms']:.0f} ms per {speed['size']}×{speed['size']} forward on {speed['cpu']}, "
                f"{threads_text(speed['threads'])}, torch {speed['torch']} (`{SPEED_FILE}`)",
            )
        )
    rows.append(("Input", f"RGB (gray and alpha kept); sides padded to a multiple of {multiple}"))
    estimator = estimator_row(folder)
    if estimator:
        rows.append(estimator)
    if base:
        base_repo, before = base
        stages_text = "stage 1" if before == 1 else f"stages 1–{before}"
        rows.append(("Fine-tuned from", f"{hub_link(base_repo)} after its {stages_text}"))
    rows += [("Licence", "Apache-2.0"), ("Paper", f"[arXiv 2303.11435]({PAPER_URL})")]
    return markdown_table(["", ""], [list(row) for row in rows])


def estimator_row(folder: Path) -> tuple[str, str] | None:
    """The Model details row on the repo's start estimator (strength="auto"), from estimator/train_info.json and its
    config; None without one."""
    path = folder / "estimator" / "train_info.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    config = json.loads((folder / "estimator" / "config.json").read_text())
    validation = info.get("validation")
    error = (
        f" (error on {validation['crops']} held-out crops: mean {validation['mae']:.3f}, 90th pct. "
        f"{validation['p90_abs_error']:.3f})"
        if validation
        else ""
    )
    tables = " (or the JPEG tables, if higher)" if config.get("quality_curve") else ""
    curve = f"; above, a measured curve sets the start{tables}" if config.get("start_curve") else ""
    return (
        "Start estimator",
        f'`estimator/` (`strength="auto"`, the default) reads each image\'s t{error}. Below '
        f"{config['nothing_below']:.3g} (the 95th percentile on clean photos) the image comes back unchanged{curve} "
        "(`docs/blind.md`).",
    )


def build_card(folder: Path, hub_org: str | None) -> ModelCard:
    model_index = json.loads((folder / "model_index.json").read_text())
    task = get_task(model_index["task"])

    def hub_id(task_id: str) -> str:
        other = get_task(task_id)
        return f"{hub_org}/{other.repo_name}" if hub_org else other.hub_repo_id

    repo_id = hub_id(task.task_id)
    evaluations = load_evaluations(folder)
    repeated = load_floor_check(folder, evaluations)
    main = primary_evaluation(evaluations)
    info = json.loads((folder / "train_info.json").read_text())
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    stages = training_stages(info)
    base = base_model(stages, task.task_id)
    first_stage = base[1] + 1 if base else 1  # the base model's stages are rows of its own card

    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="image-to-image",
        license="apache-2.0",
        base_model=hub_id(base[0]) if base else None,
        tags=[
            "indi",
            "image-restoration",
            task.task_id,
            "inversion-by-direct-iteration",
        ],  # library_name adds diffusers
        model_name=task.repo_name,
        eval_results=eval_results([primary_evaluation(evaluations)], task.task_id),  # the other settings: tables
    )
    recommended = main["recommended_steps"]
    gain = main["gain_over_input_db_one_step"]
    input_label = main["table"][0]["method"]
    floors = floor_sentences(evaluations, task.task_id, repeated)  # they state the gain too
    sections = [
        f"# {task.repo_name}: {task.title} with InDI",
        "",
        f"{task.description} InDI walks from the degraded image (t = 1) to the clean one (t = 0): "
        "**1 step** gives the best PSNR (smooth), **more steps** sharper, more realistic detail for a little PSNR. "
        f"Recommended: **{recommended} steps**.",
        "",
        "## Model details",
        "",
        details_table(folder, task, unet, (hub_id(base[0]), base[1]) if base else None),
        "",
        "## How to use",
        "",
        "```python",
        f'# pip install "indi-pipeline @ git+{PROJECT_URL}"',
        "import torch",
        "from PIL import Image",
        "from indi_pipeline import InDIPipeline",
        "",
        f'pipe = InDIPipeline.from_pretrained("{repo_id}")',
        f'image = pipe(Image.open("input.png"), num_inference_steps={recommended}, '
        "generator=torch.Generator().manual_seed(0)).images[0]",
        "```",
        "",
        f"CLI: `indi restore input.png --task {task.task_id} --steps {recommended} --output-dir restored/`. "
        f'With only diffusers: `DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)`.'
        + (
            f" For a known noise level σ (0–255 units), pass `strength=σ/{task.sigma_max * 255:.0f}` (CLI: "
            "`--sigma σ`)."
            if task.sigma_max is not None
            else ""
        ),
        "",
        "## What it does and does not do",
        "",
        f"- Trained on: {trained_on_text(task.task_id, stages)}.",
        f"- Expect it to fail on: {fails_on_text(task.task_id, stages)}.",
        *(
            floors
            or [
                f"- On the held-out photos ({main['setting']}), 1 step gains **{gain:+.2f} dB** PSNR over the "
                f"{input_label}."
            ]
        ),
        "",
        "## Evaluation",
        "",
    ]
    ordered = sorted(evaluations, key=lambda e: e is not main)
    protocols = {(evaluation_crops(e), e["seed"], e["machine"]) for e in ordered}

    def protocol(evaluation: dict) -> str:
        crop_seed = "i" if evaluation["seed"] == 0 else f"{evaluation['seed']} + i"
        return (
            f"{evaluation_crops(evaluation)}, crop i degraded and restored with seed {crop_seed}, mean over crops; "
            f"{evaluation['machine']}."
        )

    sections += [
        (protocol(main) + " " if len(protocols) == 1 else "")
        + "Sharpness: Laplacian energy over the clean image's (1 = as sharp). "
        + TRADE_OFF_RULE
        + " Every row and command: `eval_<setting>.json`.",
        "",
    ]
    for evaluation in ordered:
        variation = evaluation["variation"]
        spread = variation["mean_pixel_std_255"]
        sections += [
            f"### {evaluation['setting']}",
            "",
            *([protocol(evaluation), ""] if len(protocols) > 1 else []),
            table_markdown(evaluation, compact=True),  # the plot below shows every step count
            "",
            trade_off_sentence(evaluation, repeated),
            "",
            *(
                [
                    f"Sample variation over {variation['seeds']} seeds at {variation['steps']} steps: "
                    f"**{spread:.2f}/255** per-pixel standard deviation, mean of {variation['images']} photos."
                    if spread is not None
                    else "Sample variation: not measured.",
                    "",
                ]
                if evaluation is main  # the other settings' spread is in their eval_<setting>.json
                else []
            ),
            f"![perception–distortion plot](eval_{evaluation['setting']}.png)",
            "",
        ]
    sections += [
        "## Training",
        "",
        stage_table(stages, task.task_id, first=first_stage),
        "",
        training_legend(stages, scheduler, first=first_stage),
        "",
        f"Data: {data_text(stages)}",
        "",
        "## Limitations",
        "",
        f"- A short training ({total_training_text(stages)}): what this model does, not what InDI "
        "can do at the paper's budget. Fine-tune it on your data: `python -m train.train_indi --init_from`.",
        *floor_limitations(evaluations, task.task_id, repeated, stages),
        "- Synthetic degradations only; see the failure cases above.",
        "- Extra steps invent plausible detail: do not use the output as evidence of what was in the scene.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write README.md (model card) of an InDI model repo.")
    parser.add_argument("folders", nargs="+", help="Model repo folders (with eval_*.json and train_info.json).")
    parser.add_argument("--hub_org", default=None, help="Hub organisation for the usage snippet (default: registry).")
    parser.add_argument(
        "--measure_speed",
        action="store_true",
        help=f"first time the network's {SPEED_SIZE}x{SPEED_SIZE} forward on this CPU with {SPEED_THREADS} threads and "
        f"write {SPEED_FILE} (the card's speed line); each run first waits for a quiet CPU",
    )
    args = parser.parse_args(argv)
    for folder in map(Path, args.folders):
        if args.measure_speed:
            (folder / SPEED_FILE).write_text(json.dumps(measure_speed(folder), indent=2) + "\n")
            print(f"wrote {folder / SPEED_FILE}")
        card = build_card(folder, args.hub_org)
        card.save(folder / "README.md")
        print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    main()
