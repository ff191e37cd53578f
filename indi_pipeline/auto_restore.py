"""What is wrong with a photo, and the zoo's models chained to fix it: "JPEG blocking (t ≈ 0.40), noise (≈ 6/255)".

Every repo with a start estimator (`estimation`) can say how far along its task's path an image sits. `detect` runs
them all: a degradation is present where its estimator's start for the image is above 0, i.e. its estimate is at or
above the ``nothing_below`` calibrated on clean held-out photos (the false-positive rate on clean photos is the
share of them above it: about 5 % per estimator, `train.calibrate_estimator`).

`restore_auto` then restores what was found in the order the degradations happen to a photo undone: JPEG artefacts
first (the last thing done to the file), then noise, then blur (one deblurring model: the one that reads the most
blur), each model walking from its own start at its task's default steps. Super-resolution runs last and only when
asked for. It composes the task pipelines' own calls (`strength="auto"` or the start found at detection); it is not a
second implementation of the walk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .tasks import get_task, start_text

# The order a chain restores in: what was done to the photo last is undone first.
CHAIN_ORDER = ("jpeg", "denoise", "defocus_deblur", "motion_deblur")
BLUR_TASKS = ("defocus_deblur", "motion_deblur")  # on equal starts, the first
NAMES = {"jpeg": "JPEG blocking", "denoise": "noise", "defocus_deblur": "defocus blur", "motion_deblur": "motion blur"}


@dataclass(frozen=True)
class Finding:
    """One task's reading of an image: its estimate of t, the start its model would walk from (0 = nothing to
    restore), and whether the degradation counts as present."""

    task: str
    estimate: float
    start: float
    jpeg_quality: int | None = None

    @property
    def present(self) -> bool:
        return self.start > 0.0

    def text(self) -> str:
        """'noise ≈ 6/255 → t = 0.12', or 'no motion blur' for an absent one."""
        if not self.present:
            return f"no {NAMES[self.task]}"
        return f"{NAMES[self.task]}: {start_text(get_task(self.task), self.start, self.estimate, self.jpeg_quality)}"


@dataclass
class Stage:
    """One model of the chain: its task, the start it walked from, and the image after it (N, 3, H, W in [0, 1])."""

    task: str
    start: float
    image: torch.Tensor


@dataclass
class AutoResult:
    """The chain's output: the restored image (the input if nothing was found), what detection found, the stages in
    the order they ran, and the input's alpha channel (the chain restores colour only)."""

    image: torch.Tensor
    findings: list[Finding]
    stages: list[Stage] = field(default_factory=list)
    alpha: torch.Tensor | None = None

    def pil(self):
        """The restored image as a PIL image, with the input's alpha put back (resized after super-resolution)."""
        from .image_io import tensor_to_output

        image = tensor_to_output(self.image, "pil")[0]
        if self.alpha is not None:
            alpha = tensor_to_output(self.alpha, "pil")[0]
            image.putalpha(alpha if alpha.size == image.size else alpha.resize(image.size))
        return image

    def report(self) -> str:
        """'Found JPEG blocking (...), noise (...); no defocus blur, no motion blur. Applied: jpeg, then denoise.'"""
        found = [f.text() for f in self.findings if f.present]
        absent = [f.text() for f in self.findings if not f.present]
        parts = ["Found " + "; ".join(found) if found else "Found nothing to restore"]
        if absent:
            parts.append(", ".join(absent))
        applied = ", then ".join(f"{s.task} from t = {s.start:.2f}" for s in self.stages) or "nothing (unchanged)"
        return "; ".join(parts) + f". Applied: {applied}."


def _as_batch(image):
    """One image as the pipeline's `ImageBatch`: RGB (1, 3, H, W) in [0, 1], its alpha, and for a PIL image from a
    JPEG file its quality."""
    from .image_io import to_image_batches

    batches = to_image_batches(image)
    if len(batches) != 1 or batches[0].rgb.shape[0] != 1:
        raise ValueError("auto restoration takes one image at a time")
    return batches[0]


def detect(image, estimators: Mapping[str, object]) -> list[Finding]:
    """Each estimator's reading of ``image`` (a PIL image, array or tensor accepted by the pipeline), in chain order.

    ``estimators``: {task id: InDIStartEstimator}, e.g. from `load_estimators` or ``{t: pipe.estimator}``.
    """
    return _findings(_as_batch(image), estimators)


def _findings(batch, estimators: Mapping[str, object]) -> list[Finding]:
    rgb, quality = batch.rgb, batch.jpeg_quality
    findings = []
    for task_id in CHAIN_ORDER:
        estimator = estimators.get(task_id)
        if estimator is None:
            continue
        estimate = float(estimator.estimate(rgb)[0])
        task_quality = quality if task_id == "jpeg" else None
        start = estimator.start_for_image(estimate, task_quality)
        findings.append(Finding(task_id, estimate, start, task_quality))
    return findings


def chain_for(findings: list[Finding]) -> list[Finding]:
    """The findings a chain restores, in order: the present ones, with one blur: the one whose model starts later,
    defocus on equal starts (`BLUR_TASKS` order)."""
    present = [f for f in findings if f.present]
    blurs = [f for f in present if f.task in BLUR_TASKS]
    # Starts compare across models, estimates do not. On a tie the defocus model: on held-out photos it was the right
    # pick more often than the larger estimate (docs/auto.md), and it also restores mild shake.
    keep = max(blurs, key=lambda f: (f.start, -BLUR_TASKS.index(f.task))) if blurs else None
    return [f for f in present if f.task not in BLUR_TASKS or f is keep]


def restore_auto(
    image,
    pipelines: Mapping[str, object],
    num_inference_steps: Mapping[str, int] | int | None = None,
    reestimate: bool = False,
    upscale: bool = False,
    generator: torch.Generator | None = None,
) -> AutoResult:
    """Detects what ``image`` has and restores it with the task pipelines of ``pipelines`` ({task id:
    InDIPipeline}) in `CHAIN_ORDER`, then ``"sr4"`` when ``upscale``.

    ``num_inference_steps``: one count for every stage, or per task; default: each task's own default steps.
    ``reestimate``: each stage after the first re-reads its start from the image it is given (the previous stage
    changed it); by default every stage walks from the start found on the input, which restored as well or better
    on every case of the restoration benchmark (docs/auto.md).
    """
    estimators = {task: pipe.estimator for task, pipe in pipelines.items() if getattr(pipe, "estimator", None)}
    if not estimators:
        raise ValueError("auto restoration needs at least one model repo with a start estimator (estimator/)")
    if upscale and "sr4" not in pipelines:
        raise ValueError("an upscale was asked for, but no sr4 pipeline was given")
    batch = _as_batch(image)
    findings = _findings(batch, estimators)
    chain = [(f.task, "auto" if reestimate and k > 0 else f.start) for k, f in enumerate(chain_for(findings))]
    if upscale:
        chain.append(("sr4", 1.0))
    return run_chain(image, pipelines, chain, num_inference_steps, generator, findings=findings, batch=batch)


def run_chain(
    image,
    pipelines: Mapping[str, object],
    chain: Sequence[tuple[str, float | str]],
    num_inference_steps: Mapping[str, int] | int | None = None,
    generator: torch.Generator | None = None,
    findings: list[Finding] | None = None,
    batch=None,
) -> AutoResult:
    """Runs ``chain`` ([(task id, start or "auto")], in order) on ``image``: each stage is its task pipeline's own
    call from that start. A stage whose "auto" start reads 0 (nothing left to restore) is skipped. `restore_auto`
    builds the chain from detection; a known chain (the true degradations and starts) can be run directly."""
    batch = _as_batch(image) if batch is None else batch
    current = batch.rgb
    result = AutoResult(image=current, findings=list(findings or []), alpha=batch.alpha)
    for position, (task_id, strength) in enumerate(chain):
        steps = _steps_for(task_id, num_inference_steps)
        source = image if position == 0 else current  # the first stage sees the file (its JPEG tables)
        out = pipelines[task_id](source, num_inference_steps=steps, strength=strength, generator=generator,
                                 output_type="pt")  # fmt: skip
        start = out.start_t[0]
        if start == 0.0:  # read as clean (after the stage before): nothing to do for this task
            continue
        current = out.images.float()
        result.stages.append(Stage(task_id, start, current))
    result.image = current
    return result


def _steps_for(task_id: str, num_inference_steps: Mapping[str, int] | int | None) -> int:
    if isinstance(num_inference_steps, int):
        return num_inference_steps
    return (num_inference_steps or {}).get(task_id, get_task(task_id).default_steps)


def load_estimators(tasks=CHAIN_ORDER) -> dict:
    """The bundled repos' start estimators ({task id: InDIStartEstimator}), only their small estimator/ folders."""
    from .estimation import InDIStartEstimator

    folders = {task_id: get_task(task_id).bundled_estimator for task_id in tasks}
    return {t: InDIStartEstimator.from_pretrained(f).float().eval() for t, f in folders.items() if f is not None}


def load_pipelines(tasks=CHAIN_ORDER, upscale: bool = False) -> dict:
    """{task id: InDIPipeline} for `restore_auto`: each task's bundled repo (``model_cards/indi-<task>``) if present,
    else its Hub repo; tasks whose repo has no start estimator are left out (sr4 is added with ``upscale``)."""
    from .pipeline_indi import InDIPipeline

    pipelines = {}
    for task_id in (*tasks, *(("sr4",) if upscale else ())):
        task = get_task(task_id)
        source = task.local_path if (task.local_path / "model_index.json").is_file() else task.hub_repo_id
        pipe = InDIPipeline.from_pretrained(source)
        pipe.set_progress_bar_config(disable=True)
        if pipe.estimator is not None or task_id == "sr4":
            pipelines[task_id] = pipe
    return pipelines
