"""The task registry: one place that says, per task, where its model lives and how to run it.

Used by the app, the CLI and the evaluation. Hub repo ids are ``<org>/indi-<task>``; the org comes from the
environment variable ``INDI_HUB_ORG`` (default ``indi-zoo``). Bundled repos live in ``model_cards/`` next to the
package, or wherever ``INDI_MODEL_DIR`` points.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HUB_ORG = "indi-zoo"
MODEL_DIR_ENV = "INDI_MODEL_DIR"
HUB_ORG_ENV = "INDI_HUB_ORG"


@dataclass(frozen=True)
class Task:
    """One restoration task of the zoo (design.md §4)."""

    task_id: str
    title: str
    description: str
    # The app's and CLI's default: the card's recommended steps (sr4 8, defocus 8, motion 4), or fewer where those
    # cost much more time for little: 8 where jpeg (q10) recommends 32, for most of its LPIPS gain (0.124 vs 0.121);
    # 8 where the denoiser recommends 64 (sigma 50: -12 % LPIPS): at 8 steps sigma 50 is better than 1 step on both
    # PSNR and LPIPS, and sigma 25 already has -13 % LPIPS for -0.2 dB, at 1/8 of 64 steps' time.
    default_steps: int
    # The training default and the app's: the eps the bundled model was trained with (a test checks they agree),
    # so that the Space restores as the card measured. The deblurring models trained best with 0.01 on the CPU.
    eps: float
    upscale_factor: int = 1
    sigma_max: float | None = None  # denoising only: the noise level that means strength = 1

    @property
    def repo_name(self) -> str:
        return f"indi-{self.task_id}"

    @property
    def local_path(self) -> Path:
        """The bundled model repo folder (may not exist yet if the model has not been trained)."""
        return model_dir() / self.repo_name

    @property
    def bundled_estimator(self) -> Path | None:
        """The bundled repo's start estimator folder (``strength="auto"``), or None if it has none."""
        folder = self.local_path / "estimator"
        return folder if (folder / "config.json").is_file() else None

    @property
    def hub_repo_id(self) -> str:
        return f"{os.environ.get(HUB_ORG_ENV, DEFAULT_HUB_ORG)}/{self.repo_name}"

    def strength_for_sigma(self, sigma: float) -> float:
        """Denoising: the walk's start t for a known noise level sigma (in [0, 1] units, e.g. 25/255)."""
        if self.sigma_max is None:
            raise ValueError(f"task {self.task_id!r} has no noise level; strength_for_sigma is for 'denoise'")
        if not 0.0 < sigma <= self.sigma_max:
            raise ValueError(
                f"noise level {sigma * 255:.1f}/255 is outside (0, {self.sigma_max * 255:.0f}/255] for this model"
            )
        return sigma / self.sigma_max


def model_dir() -> Path:
    """Folder holding the bundled model repos: $INDI_MODEL_DIR, else ``model_cards/`` beside the package (a
    checkout or editable install), else ``model_cards/`` in the working directory (a non-editable install run from
    the checkout, as on a Space)."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override)
    beside_package = Path(__file__).resolve().parent.parent / "model_cards"
    in_working_dir = Path.cwd() / "model_cards"
    return beside_package if beside_package.is_dir() or not in_working_dir.is_dir() else in_working_dir


TASKS: dict[str, Task] = {
    task.task_id: task
    for task in (
        Task(
            "motion_deblur",
            "Motion deblurring",
            "Removes camera-shake blur (unknown random shake path, 5-25 px long).",
            default_steps=4,
            eps=0.01,
        ),
        Task(
            "defocus_deblur",
            "Defocus deblurring",
            "Sharpens out-of-focus photos (unknown disk blur, radius 1-6 px).",
            default_steps=8,
            eps=0.01,
        ),
        Task(
            "sr4",
            "4x super-resolution",
            "Makes a small image 4x larger with restored detail (bicubic-downscaled inputs).",
            default_steps=8,
            eps=0.02,
            upscale_factor=4,
        ),
        Task(
            "jpeg",
            "JPEG artifact removal",
            "Removes blocking and ringing from JPEG-compressed images.",
            default_steps=8,
            eps=0.02,
        ),
        Task(
            "denoise",
            "Denoising",
            "Removes Gaussian noise up to sigma 50/255; give the noise level if you know it.",
            default_steps=8,
            eps=0.01,
            sigma_max=50.0 / 255.0,
        ),
    )
}


def get_task(task_id: str) -> Task:
    """The task with this id; a ValueError lists the valid ids otherwise."""
    try:
        return TASKS[task_id]
    except KeyError:
        raise ValueError(f"unknown task {task_id!r}; choose one of {', '.join(TASKS)}") from None


def start_text(task, start_t: float, estimate: float | None = None, jpeg_quality: int | None = None) -> str:
    """What the walk started from, for the report: 'noise ≈ 9/255 → t = 0.18', 'JPEG quality 30 (file tables),
    t ≈ 0.85 → t = 1.00', 't = 0.32', 'noise ≈ 2/255: nothing to restore, left unchanged'. ``estimate`` is what the
    estimator read (the start comes from it through its start curve), ``jpeg_quality`` the file's quality."""
    read = start_t if estimate is None else estimate
    parts = []
    if jpeg_quality is not None:
        parts.append(f"JPEG quality {jpeg_quality} (file tables)")
    parts.append(f"noise ≈ {read * task.sigma_max * 255:.0f}/255" if task.sigma_max is not None else f"t ≈ {read:.2f}")
    found = ", ".join(parts)
    if start_t == 0.0:
        return (
            f"{found}: nothing to restore, left unchanged"
            if estimate is not None
            else "nothing to restore: left unchanged"
        )
    if estimate is None and task.sigma_max is None:
        return f"t = {start_t:.2f}"
    return f"{found} → t = {start_t:.2f}"
