"""InDI image restoration: the Gradio Space (also `python app.py` on a laptop).

A demo that teaches Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023): restoration is a walk from the
degraded image (t = 1) to a clean one (t = 0) in small steps, and the number of steps is the perception-distortion
dial. Every restoration goes through `InDIPipeline` (design.md §2); this file only wires it to a UI.

Environment:
    INDI_MODEL_SOURCE     "local" (default: the bundled `model_cards/indi-<task>` folders, see `indi_pipeline.tasks`)
                          or "hub" (the Hub repos `<INDI_HUB_ORG>/indi-<task>`)
    INDI_MODEL_REVISION   with INDI_MODEL_SOURCE=hub: a pinned revision (tag, branch or commit) for every repo
    INDI_MODEL_DIR        where the bundled repos live (default `model_cards/`)
    INDI_APP_MAX_PIXELS   largest image restored, counted at the output size (default 2.1 MP)
    INDI_APP_THREADS      torch CPU threads (default: torch's choice)
    INDI_DTYPE            arithmetic of the network: auto (default: bf16 where the CPU or GPU computes it natively),
                          fp32 or bf16. The Space runs on CUDA when torch sees a GPU, and on ZeroGPU when the
                          `spaces` package is installed.
    GRADIO_SERVER_PORT / GRADIO_SERVER_NAME   where `python app.py` serves (Gradio's own variables)

API (gradio_client):
    from gradio_client import Client, handle_file
    before_after, report, trajectory = Client("http://127.0.0.1:7860/").predict(
        handle_file("photo.png"), api_name="/restore")   # every other parameter has a default
"""

from __future__ import annotations

import atexit
import hashlib
import io
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import PIL.Image
import torch

from indi_pipeline import InDIPipeline, metrics
from indi_pipeline.acceleration import dtype_name, optimize_for_inference
from indi_pipeline.auto_restore import CHAIN_ORDER, restore_auto
from indi_pipeline.degradations import degrade_pil, pil_to_tensor
from indi_pipeline.image_io import ImageFileError, ImageTooLargeError, open_image_file, size_problem, tensor_to_output
from indi_pipeline.limits import region_box
from indi_pipeline.photo_files import PhotoMetadata
from indi_pipeline.tasks import MODEL_DIR_ENV, TASKS, Task, start_text

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"

MODEL_SOURCE_ENV = "INDI_MODEL_SOURCE"
MODEL_REVISION_ENV = "INDI_MODEL_REVISION"
MAX_PIXELS = int(float(os.environ.get("INDI_APP_MAX_PIXELS", "2.1e6")))  # per restored image, at the output size
QUEUE_SIZE = int(os.environ.get("INDI_APP_QUEUE_SIZE", "16"))  # waiting requests; one more is refused "queue full"
MIN_SIDE = 8  # px, of the image the walk runs on
# A photo over MAX_PIXELS (a phone's 12-50 MP) gets a full-resolution region restored instead of a refusal; this is
# the largest photo the region is cut from (decoding it costs memory, not network time).
MAX_PHOTO_PIXELS = int(float(os.environ.get("INDI_APP_MAX_PHOTO_PIXELS", "60e6")))
OVERVIEW_SIDE = 512  # px, long side of the picture that shows where the region sits
MAX_STEPS = 50
MAX_SAMPLES = 8
TRAJECTORY_FRAMES = 6


def _bundled(spec: Task) -> bool:
    return (spec.local_path / "model_index.json").is_file()


# The tasks the Space offers: all of them from the Hub, else those whose model repo is bundled (a task without a
# trained model yet is left out rather than offered and refused).
AVAILABLE_TASKS = [
    task_id for task_id, spec in TASKS.items() if os.environ.get(MODEL_SOURCE_ENV) == "hub" or _bundled(spec)
] or list(TASKS)
# "Auto (detect)": the same-size tasks whose repo has a start estimator find what a photo has and restore it in order
# (auto_restore); from the Hub every repo is tried and those without an estimator are left out when loaded.
AUTO = Task(
    "auto",
    "Auto (detect)",
    "Finds JPEG blocking, noise and blur with each model's estimator and restores what it finds in that order, each "
    "model from its own start, at its own steps and eps.",
    default_steps=0,  # 0 = each model's own default steps
    eps=0.0,
)
AUTO_TASKS = [
    t
    for t in CHAIN_ORDER
    if t in AVAILABLE_TASKS and (os.environ.get(MODEL_SOURCE_ENV) == "hub" or TASKS[t].bundled_estimator)
]
# Default to Auto, else a same-size task: an upscaling default would make every large upload exceed the size limit.
DEFAULT_TASK = (
    AUTO.task_id
    if AUTO_TASKS
    else next((t for t in AVAILABLE_TASKS if TASKS[t].upscale_factor == 1), AVAILABLE_TASKS[0])
)
DEFAULT_STEPS = 0 if AUTO_TASKS else TASKS[DEFAULT_TASK].default_steps
DEFAULT_EPS = TASKS[AUTO_TASKS[0]].eps if AUTO_TASKS else TASKS[DEFAULT_TASK].eps
HEATMAP_CMAP = "magma"
OUTPUT_MAX_AGE_S = 600  # our PNGs only need to live until Gradio has copied them into its cache

STEPS_INFO = (
    "The perception-distortion dial: 1 step is the smooth regression answer (best PSNR, blurry); "
    "more steps give sharper, more realistic detail. 0 = the model's own default (Auto: each model's)."
)

if os.environ.get("INDI_APP_THREADS"):
    torch.set_num_threads(int(os.environ["INDI_APP_THREADS"]))

try:  # ZeroGPU Spaces: the `spaces` package lends a GPU to each call of a decorated handler
    import spaces
except ImportError:  # a CPU Space, or a machine without it: handlers run as they are
    spaces = None


def gpu_handler(handler):
    """``spaces.GPU(handler)`` where the `spaces` package is installed (ZeroGPU), else ``handler`` unchanged."""
    return spaces.GPU(handler) if spaces is not None else handler


def inference_device() -> str:
    """ "cuda" where torch sees a GPU (a GPU Space, or ZeroGPU, whose package makes it visible), else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------------------------
# Models: loaded once per task, shared by every request
# ---------------------------------------------------------------------------------------------------------------
_PIPELINES: dict[str, InDIPipeline] = {}
_LOAD_LOCK = threading.Lock()


def model_location(task: Task) -> tuple[str, str | None]:
    """Where the task's model is loaded from: a local folder (revision None) or a Hub repo id and its pinned
    revision (None = the default branch)."""
    source = os.environ.get(MODEL_SOURCE_ENV, "local").strip().lower()
    if source == "hub":
        return task.hub_repo_id, os.environ.get(MODEL_REVISION_ENV) or None
    if source != "local":
        raise gr.Error(f"{MODEL_SOURCE_ENV} must be 'local' or 'hub', got {source!r}")
    folder = task.local_path
    if not (folder / "model_index.json").is_file():
        raise gr.Error(
            f"No model for task '{task.task_id}' ({task.title}): looked for {folder}/model_index.json. "
            f"Train it (train/), point {MODEL_DIR_ENV} at another folder, or set {MODEL_SOURCE_ENV}=hub "
            f"to use {task.hub_repo_id}."
        )
    return str(folder), None


def get_pipeline(task: Task) -> InDIPipeline:
    """The task's pipeline, loaded on first use and cached; gr.Error naming the task and the place if missing."""
    with _LOAD_LOCK:
        pipe = _PIPELINES.get(task.task_id)
        if pipe is not None:
            return pipe
        where, revision = model_location(task)
        try:
            pipe = InDIPipeline.from_pretrained(where, revision=revision)
        except OSError as error:  # missing repo / files, offline without a cache, unreadable weights
            at = f"{where}@{revision}" if revision else where
            raise gr.Error(f"Could not load the model for task '{task.task_id}' from {at}: {error}") from error
        pipe.set_progress_bar_config(disable=True)  # gr.Progress shows the steps instead
        try:  # channels_last on the CPU, bf16 where the hardware has it ($INDI_DTYPE); no compile: its first call
            # would block the Space
            optimize_for_inference(pipe.to(inference_device()))
        except ValueError as error:  # a bad $INDI_DTYPE
            raise gr.Error(str(error)) from error
        _PIPELINES[task.task_id] = pipe
        return pipe


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------
def _task(task_id) -> Task:
    if task_id == AUTO.task_id and AUTO_TASKS:
        return AUTO
    if not isinstance(task_id, str) or task_id not in TASKS:
        choices = ([AUTO.task_id] if AUTO_TASKS else []) + list(TASKS)
        raise gr.Error(f"Unknown task {task_id!r}; choose one of: {', '.join(choices)}")
    return TASKS[task_id]


def _number(value, name: str, low: float, high: float | None = None, whole: bool = False) -> float:
    """A finite number in [low, high] (a whole one with `whole`), else gr.Error naming the parameter."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and low <= value and (high is None or value <= high) and (not whole or value == int(value))
    if not ok:
        kind = "a whole number" if whole else "a number"
        show = (lambda v: str(int(v))) if whole else (lambda v: f"{v:g}")
        bounds = f"from {show(low)} to {show(high)}" if high is not None else f">= {show(low)}"
        raise gr.Error(f"{name} must be {kind} {bounds}, got {value!r}")
    return int(value) if whole else float(value)


def check_min_side(width: int, height: int, scale: int = 1) -> None:
    """gr.Error unless the image the walk runs on (width x height, `scale` times larger) has MIN_SIDE px a side."""
    if min(width * scale, height * scale) < MIN_SIDE:
        raise gr.Error(f"The image is {width}x{height} px; it needs at least {MIN_SIDE} px on each side.")


def check_size(width: int, height: int, scale: int = 1, count: int = 1) -> None:
    """gr.Error unless `count` images of width x height, restored `scale` times larger, fit MAX_PIXELS."""
    check_min_side(width, height, scale)
    problem = size_problem(width, height, MAX_PIXELS, scale=scale, count=count)
    if problem:
        raise gr.Error(f"The image is {problem}. Crop or downscale it.")


def _upload_path(image: str | dict | None) -> str:
    """The uploaded file's path, from a path or from the raw file payload the restore events get.

    The restore events run with preprocess=False: Gradio's image preprocessing opens every upload with PIL before
    the handler runs, so a file that is not an image would fail there with an error the visitor never sees. Gradio
    still checks that the payload's path is a file uploaded to its cache; the handler opens it (`open_image`).
    """
    path = image.get("path") if isinstance(image, dict) else image
    if not path:
        raise gr.Error("Upload an image first (or click one of the examples).")
    return str(path)


@dataclass(frozen=True)
class Region:
    """Where the restored region lies in a photo too large to restore whole: (left, top, right, bottom) and the
    photo's size."""

    box: tuple[int, int, int, int]
    photo_size: tuple[int, int]

    def text(self, task: Task, outlined: bool = True) -> str:
        """The report's paragraph; ``outlined``: the trajectory view shows where the region lies."""
        (left, top, right, bottom), (width, height) = self.box, self.photo_size
        shown = "outlined in the first trajectory frame; " if outlined else ""
        return (
            f"\n\nYour photo is {width}×{height} px ({width * height / 1e6:.1f} MP), more than this Space restores at "
            f"once ({MAX_PIXELS / 1e6:.1f} MP at the output size), so this is its full-resolution region "
            f"x {left}–{right}, y {top}–{bottom} ({shown}move it with *Region* under Advanced). For the whole photo, "
            f"run `indi restore photo.jpg --task {task.task_id}` or `InDIPipeline` on your machine: both tile large "
            "photos."
        )

    def overview(self, photo: PIL.Image.Image) -> PIL.Image.Image:
        """The whole photo, small, with the region outlined."""
        from PIL import ImageDraw

        small = photo.convert("RGB")
        small.thumbnail((OVERVIEW_SIDE, OVERVIEW_SIDE))
        ratio = small.width / photo.width
        box = [round(v * ratio) for v in self.box]
        draw = ImageDraw.Draw(small)
        for inset, colour in ((0, (255, 255, 255)), (2, (230, 40, 40))):
            draw.rectangle([box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset], outline=colour, width=2)
        return small


def open_image(
    image: str | dict | None, scale: int = 1, centre: tuple[float, float] = (0.5, 0.5), count: int = 1
) -> tuple[PIL.Image.Image, Region | None, PIL.Image.Image | None]:
    """The upload as an 8-bit RGB (or RGBA) PIL image, upright, with the region it is of a larger photo and that photo
    (None, None when it is whole); gr.Error naming the problem for a file that is not a still image, is damaged, or
    is too large even to cut a region from (`open_image_file` checks the size from the header, before any pixel is
    decoded). `scale`: the restored output's magnification; `count`: images restored at once (samples)."""
    path = _upload_path(image)
    region = photo = None
    try:
        image = open_image_file(path, max_pixels=MAX_PIXELS // count, scale=scale)
    except ImageTooLargeError:
        try:
            photo = open_image_file(path, max_pixels=MAX_PHOTO_PIXELS)
        except ImageTooLargeError as error:
            raise gr.Error(f"The image has {error}. Crop or downscale it.") from None
        except ImageFileError as error:
            raise gr.Error(f"Cannot restore this upload: {error}.") from None
        box = region_box(photo.width, photo.height, MAX_PIXELS // count, centre, scale)
        region = Region(box, photo.size)
        image = photo.crop(box)
        image.info.update(photo.info)  # the file's profile, EXIF and JPEG tables belong to the region too
    except ImageFileError as error:
        raise gr.Error(f"Cannot restore this upload: {error}. Upload a PNG, JPEG, WebP, BMP or TIFF photo.") from None
    check_min_side(image.width, image.height, scale)  # the pixel limit was checked from the header, above
    return _to_8bit(image), region, photo


def _to_8bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB, or RGBA where the image has transparency (the pipeline passes alpha through untouched)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grayscale: scale, do not clip
        array = np.asarray(image, dtype=np.float32)
        peak = 1.0 if image.mode == "F" else 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return PIL.Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    has_alpha = image.mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _strength(task: Task, noise_level: float | None, start: float | None = 0) -> tuple[float | None, str]:
    """The walk's start t: None (the pipeline's default: estimated per image where the repo has an estimator, else
    1); the start set by hand (0 = not set); or sigma / sigma_max for denoising with a known noise level (in 8-bit
    levels). Either overrides the estimate."""
    start = _number(0 if start is None else start, "start", 0, 1)
    noise_level = _number(0 if noise_level is None else noise_level, "noise_level", 0, 255)
    if start > 0:
        if task is AUTO:
            raise gr.Error("Auto finds each model's start itself: set Start t to 0, or pick a task.")
        return start, f", start t = {start:.2f} (set by hand)"
    if noise_level == 0:
        return None, ""
    if task.sigma_max is None:
        return None, f" (the noise level {noise_level:g}/255 was ignored: it is for denoising only)"
    try:
        strength = task.strength_for_sigma(float(noise_level) / 255.0)
    except ValueError as error:
        raise gr.Error(f"Noise level: {error}") from None
    return strength, f", known noise level {noise_level:g}/255 → strength {strength:.2f}"


def _prepare(image, task: Task, degrade_first: bool, centre=(0.5, 0.5), count: int = 1):
    """(the pipeline's input, the clean original or None, the region of a larger photo or None, that photo or None).
    With degrade_first the upload is a clean photo that is degraded here by the library's own degradation of the
    task (seed 0), so metrics against it can be shown."""
    if not degrade_first:
        degraded, region, photo = open_image(image, scale=task.upscale_factor, centre=centre, count=count)
        return degraded, None, region, photo
    clean, region, photo = open_image(image, scale=1, centre=centre, count=count)
    clean = clean.convert("RGB")
    if task.upscale_factor > 1:
        factor = task.upscale_factor
        if min(clean.size) < factor * MIN_SIDE:
            raise gr.Error(f"A clean photo for {task.title} needs at least {factor * MIN_SIDE} px on each side.")
        clean = clean.crop((0, 0, clean.width - clean.width % factor, clean.height - clean.height % factor))
    return degrade_pil(task.task_id, clean, seed=0), clean, region, photo


def _before(degraded: PIL.Image.Image, task: Task) -> PIL.Image.Image:
    """What the walk starts from, at the output size (bicubic upscale for super-resolution, as the pipeline does)."""
    if task.upscale_factor == 1:
        return degraded
    size = (degraded.width * task.upscale_factor, degraded.height * task.upscale_factor)
    return degraded.resize(size, PIL.Image.BICUBIC)


def _generator(seed) -> torch.Generator:
    return torch.Generator().manual_seed(_number(seed, "seed", 0, 2**32 - 1, whole=True))


def _progress_callback(progress: gr.Progress, steps: int, what: str):
    """callback_on_step_end that moves the Gradio progress bar one InDI step at a time."""

    def on_step_end(pipe, step_index, timestep, callback_kwargs):
        t = float(timestep) / pipe.scheduler.config.num_train_timesteps  # the walk's t in [0, 1] before this step
        progress((step_index + 1, steps), desc=f"{what}: step {step_index + 1}/{steps} (from t = {t:.2f})")
        return {}

    return on_step_end


_OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="indi-app-"))
atexit.register(shutil.rmtree, _OUTPUT_DIR, ignore_errors=True)


def _png(image: PIL.Image.Image, name: str, metadata: PhotoMetadata | None = None) -> str:
    """Saves a lossless PNG for an output component and returns its path; with ``metadata`` (the upload's) it
    carries the photo's ICC profile and EXIF, orientation reset (what the visitor downloads).

    Gradio would encode PIL outputs itself (format="png" on the components), but at zlib level 6: ~0.2 s per
    512x512 image on one core, over a second for the slider plus the trajectory. Level 1 is 6x faster for ~15 %
    more bytes. Files older than OUTPUT_MAX_AGE_S are removed (Gradio serves its own copies).
    """
    options = {} if metadata is None else metadata.save_options(image.size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, **options)
    data = buffer.getvalue()
    path = _OUTPUT_DIR / f"{name}-{hashlib.sha256(data).hexdigest()[:20]}.png"
    path.write_bytes(data)
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    for old in _OUTPUT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:  # removed by a concurrent request
            pass
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------------------
def _metrics_table(clean, before, restored, task: Task, steps: int) -> str:
    x = pil_to_tensor(clean)
    rows = []
    for name, image in (
        ("bicubic 4× upscale" if task.upscale_factor > 1 else "degraded input", before),
        (f"restored, {steps} step{'s' if steps > 1 else ''}", restored),
    ):
        y = pil_to_tensor(image)
        psnr = float(metrics.psnr(y, x)[0])
        lpips = float(metrics.lpips(y, x)[0])
        rows.append(f"| {name} | {psnr:.2f} dB | {lpips:.3f} |")
    return (
        "| against the clean original | PSNR ↑ | LPIPS ↓ |\n|---|---|---|\n"
        + "\n".join(rows)
        + "\n\n*1 step aims at the best PSNR (a smooth average); more steps aim at realism (lower LPIPS). "
        "Move the Steps slider and press Restore to compare.*"
    )


@dataclass
class Request:
    """What /restore and /uncertainty share: the task, the checked steps and eps, the walk's start t (with a note
    for the report), the image to restore, the clean original when the upload is degraded first, and the region of
    a larger photo (with that photo) when the upload is too large to restore whole."""

    spec: Task
    steps: int
    eps: float
    strength: float | None
    strength_note: str
    degraded: PIL.Image.Image
    clean: PIL.Image.Image | None
    region: Region | None
    photo: PIL.Image.Image | None

    def overview_frames(self) -> list[tuple[str, str]]:
        """The trajectory view's first frame for a region of a larger photo: where it lies; none otherwise."""
        if self.region is None:
            return []
        path = _png(self.region.overview(self.photo), "region")
        return [(path, f"the restored region of the {self.photo.width}×{self.photo.height} photo")]


def _request(
    image, task, steps, eps, noise_level, degrade_first, region_x=50, region_y=50, count=1, start=0
) -> Request:
    spec = _task(task)
    steps = _number(steps, "steps", 0, MAX_STEPS, whole=True) or spec.default_steps  # 0: the model's own
    eps = _number(eps, "eps", 0.0, 0.5)
    centre = (_number(region_x, "region_x", 0, 100) / 100, _number(region_y, "region_y", 0, 100) / 100)
    strength, strength_note = _strength(spec, noise_level, start)
    prepared = _prepare(image, spec, bool(degrade_first), centre, count)
    return Request(spec, steps, eps, strength, strength_note, *prepared)


def restore(
    image: str | dict | None,
    task: str = DEFAULT_TASK,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    noise_level: float = 0,
    degrade_first: bool = False,
    region_x: float = 50,
    region_y: float = 50,
    start: float = 0,
    progress: gr.Progress = gr.Progress(),
) -> tuple[tuple[str, str], str, list[tuple[str, str]]]:
    """Restores an image with the task's InDI model.

    Args:
        image: the degraded photo (for "sr4" the low-resolution image; the result is 4x larger).
        task: one of motion_deblur, defocus_deblur, sr4, jpeg, denoise.
        steps: number of InDI steps, 1-50 (1 = regression: best PSNR, smooth; more = sharper, more realistic).
        seed: seed of the path noise (same seed, same result).
        eps: path noise level of the walk (default: the eps the task's model was trained with).
        noise_level: denoise only: the known noise sigma in 8-bit levels (1-50); 0 = unknown (start at t = 1).
        degrade_first: the upload is a clean photo: degrade it with the task's degradation (seed 0) first and report
            PSNR / LPIPS against it.
        region_x, region_y: for a photo too large to restore whole, where the centre of the full-resolution region
            that is restored lies, in percent of the photo's width and height (default: its centre).
        start: the walk's start t in (0, 1] set by hand, overriding the estimate; 0 = estimated (or 1 for a model
            without an estimator).

    Returns:
        (before, after) images for the slider, a Markdown report, and ~6 frames of the walk with their t (the first
        one, for a region of a larger photo, shows where it lies).
    """
    generator = _generator(seed)
    request = _request(image, task, steps, eps, noise_level, degrade_first, region_x, region_y, start=start)
    if request.spec is AUTO:
        return _restore_auto(request, generator)
    spec, steps, eps, strength, strength_note = (
        request.spec, request.steps, request.eps, request.strength, request.strength_note
    )  # fmt: skip
    degraded, clean = request.degraded, request.clean
    pipe = get_pipeline(spec)

    started = time.perf_counter()
    out = pipe(
        degraded,
        num_inference_steps=steps,
        strength=strength,
        generator=generator,
        eps=eps,
        output_type="pt",  # frames stay tensors; only the ones shown become images
        return_trajectory=True,
        callback_on_step_end=_progress_callback(progress, steps, spec.title),
    )
    seconds = time.perf_counter() - started
    restored = tensor_to_output(out.images, "pil")[0]
    before = _before(degraded, spec)
    metadata = PhotoMetadata.of(degraded)  # the upload's profile and camera data (none on a degraded clean photo)
    before_path, restored_path = _png(before, "before", metadata), _png(restored, "restored", metadata)

    count = min(TRAJECTORY_FRAMES, steps + 1)
    picks = sorted({int(round(k)) for k in np.linspace(0, steps, count)})
    gallery = request.overview_frames()
    for k in picks:
        label = "start" if k == 0 else "result" if k == steps else f"step {k}"
        frame = restored_path if k == steps else _png(tensor_to_output(out.trajectory[k], "pil")[0], f"t{k}")
        gallery.append((frame, f"t = {out.timesteps[k]:.2f} · {label}"))

    report = (
        f"**{spec.title}**: {restored.width}×{restored.height} px, {steps} step{'s' if steps > 1 else ''}, "
        f"eps {eps:g}, seed {int(seed)}{strength_note}{_estimate_note(spec, pipe, strength, out)}; "
        f"restored in {seconds:.1f} s on {_compute_text(pipe)}."
    )
    if request.region is not None:
        report += request.region.text(spec)
    if clean is not None:
        report += "\n\n" + _metrics_table(clean, before, restored, spec, steps)
    return (before_path, restored_path), report, gallery


def _restore_auto(request: Request, generator: torch.Generator) -> tuple[tuple[str, str], str, list[tuple[str, str]]]:
    """/restore with task "auto": detection and the chain of models (auto_restore.restore_auto); the trajectory
    view shows the input and the image after each model."""
    if request.clean is not None:
        raise gr.Error(
            "Auto restores the photo as it is: uncheck 'This is a clean photo', or pick a task to degrade for."
        )
    pipelines = {}
    for task_id in AUTO_TASKS:
        pipe = get_pipeline(TASKS[task_id])
        if pipe.estimator is not None:  # a Hub repo without one is left out
            pipelines[task_id] = pipe
    if not pipelines:
        raise gr.Error("Auto needs a model with a start estimator; none of the loaded models has one. Pick a task.")
    started = time.perf_counter()
    steps = request.steps or None  # 0: each model's own default steps
    result = restore_auto(request.degraded, pipelines, num_inference_steps=steps, generator=generator)
    seconds = time.perf_counter() - started
    restored = result.pil()  # with the upload's alpha, if it has one
    metadata = PhotoMetadata.of(request.degraded)
    before_path, restored_path = _png(request.degraded, "before", metadata), _png(restored, "restored", metadata)
    gallery = request.overview_frames()
    gallery.append((before_path, "input"))
    for number, stage in enumerate(result.stages, 1):
        frame = (
            restored_path if number == len(result.stages) else _png(tensor_to_output(stage.image, "pil")[0], stage.task)
        )
        gallery.append((frame, f"after {TASKS[stage.task].title.lower()} (from t = {stage.start:.2f})"))
    report = (
        f"**Auto**: {restored.width}×{restored.height} px; {result.report()} "
        f"Restored in {seconds:.1f} s on {_compute_text(next(iter(pipelines.values())))}."
    )
    if request.region is not None:
        report += request.region.text(AUTO)
    return (before_path, restored_path), report, gallery


def _estimate_note(spec: Task, pipe: InDIPipeline, strength: float | None, out) -> str:
    """What the estimator read off the image, when the walk started from its estimate."""
    if strength is not None or pipe.estimator is None:
        return ""
    return f", estimated from the image: {start_text(spec, out.start_t[0], out.estimated_t[0], out.jpeg_quality[0])}"


def _compute_text(pipe: InDIPipeline) -> str:
    """Where and in which arithmetic the network ran: 'cpu, bf16', 'cuda, fp32'."""
    return f"{pipe.device.type}, {dtype_name(pipe.autocast_dtype)}"


def run_example(image: str, task: str, degrade_first: bool):
    """The examples: a clean photo, degraded for its task, restored with the task's defaults (cached lazily)."""
    spec = _task(task)
    return restore(image, task, steps=spec.default_steps, seed=0, eps=spec.eps, degrade_first=degrade_first)


def _heatmap(std: np.ndarray, vmax: float) -> PIL.Image.Image:
    """Per-pixel std (H, W) as a colour image at the photo's size, with a labelled colour scale below it."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    cmap = colormaps[HEATMAP_CMAP]
    heat = (cmap(np.clip(std / vmax, 0.0, 1.0))[..., :3] * 255.0 + 0.5).astype(np.uint8)
    height, width = std.shape
    strip_width = max(width, 360)
    dpi = 100
    figure = Figure(figsize=(strip_width / dpi, 0.75), dpi=dpi, facecolor="white")
    axes = figure.add_axes((0.05, 0.62, 0.90, 0.25))
    colorbar = figure.colorbar(
        ScalarMappable(norm=Normalize(0.0, vmax * 255.0), cmap=cmap), cax=axes, orientation="horizontal"
    )
    colorbar.ax.tick_params(labelsize=8, length=2, pad=1)
    colorbar.set_label("per-pixel std across samples (grey levels of 255)", fontsize=8, labelpad=1)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    strip = np.asarray(canvas.buffer_rgba())[..., :3]
    sheet = np.full((height + strip.shape[0], strip_width, 3), 255, dtype=np.uint8)
    left = (strip_width - width) // 2
    sheet[:height, left : left + width] = heat
    sheet[height:, : strip.shape[1]] = strip[:, :strip_width]
    return PIL.Image.fromarray(sheet)


def sample_uncertainty(
    image: str | dict | None,
    task: str = DEFAULT_TASK,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    noise_level: float = 0,
    degrade_first: bool = False,
    samples: int = 4,
    region_x: float = 50,
    region_y: float = 50,
    start: float = 0,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, str, str]:
    """Draws `samples` restorations with seeds seed, seed+1, ... in one batched pipeline call.

    Returns the mean image, a heatmap of the per-pixel standard deviation (where the model is unsure) and a
    Markdown summary. Other arguments as for /restore.
    """
    samples = _number(samples, "samples", 2, MAX_SAMPLES, whole=True)
    first = _generator(seed)  # validates the seed
    generators = [first] + [torch.Generator().manual_seed(int(seed) + k) for k in range(1, samples)]
    request = _request(image, task, steps, eps, noise_level, degrade_first, region_x, region_y, samples, start)
    if request.spec is AUTO:
        raise gr.Error("The uncertainty view draws samples of one model: pick a task (not Auto) for it.")
    spec, steps, eps, strength, strength_note = (
        request.spec, request.steps, request.eps, request.strength, request.strength_note
    )  # fmt: skip
    degraded = request.degraded
    check_size(degraded.width, degraded.height, scale=spec.upscale_factor, count=samples)
    pipe = get_pipeline(spec)

    # One (K, H, W, C) array = one batch of K through the network, each sample with its own generator.
    batch = np.repeat(np.asarray(degraded)[None], samples, axis=0)
    started = time.perf_counter()
    out = pipe(
        batch,
        num_inference_steps=steps,
        strength=strength,
        generator=generators,
        eps=eps,
        output_type="np",
        callback_on_step_end=_progress_callback(progress, steps, f"{samples} samples"),
    )
    seconds = time.perf_counter() - started
    rgb = out.images[..., :3].astype(np.float64)
    mean = tensor_to_output(torch.from_numpy(out.images.mean(axis=0))[None].permute(0, 3, 1, 2), "pil")[0]
    std = rgb.std(axis=0, ddof=1).mean(axis=-1)  # sample std over the K samples, averaged over R, G, B
    vmax = max(float(np.percentile(std, 99.5)), 0.5 / 255.0)
    summary = (
        f"**{samples} samples** of {spec.title} ({steps} steps, eps {eps:g}, "
        f"seeds {int(seed)}–{int(seed) + samples - 1}{strength_note}{_estimate_note(spec, pipe, strength, out)}) "
        f"in one batched call: {seconds:.1f} s.\n\n"
        f"Mean per-pixel std: **{std.mean() * 255:.2f}** grey levels of 255 (max {std.max() * 255:.1f}). "
        f"The colour scale runs from 0 (black: every sample agrees) to {vmax * 255:.1f} (yellow, the 99.5th "
        "percentile): bright regions are where the model is unsure and each seed invents different detail."
    )
    if eps == 0:
        summary += "\n\n*eps = 0 makes the walk deterministic, so every sample is the same: raise eps in Advanced.*"
    if request.region is not None:
        summary += request.region.text(spec, outlined=False)
    return _png(mean, "mean"), _png(_heatmap(std, vmax), "std"), summary


def on_task_change(task: str):
    spec = _task(task)
    input_label = (
        f"Low-resolution image (the result is {spec.upscale_factor}× larger)"
        if spec.upscale_factor > 1
        else "Degraded image"
    )
    return (
        gr.update(info=spec.description),
        gr.update(label=input_label),
        gr.update() if spec is AUTO else gr.update(value=spec.eps),  # Auto walks each model at its own eps
        gr.update(visible=True) if spec.sigma_max is not None else gr.update(visible=False, value=0),
    )


# ---------------------------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------------------------
INTRO = """
# InDI: image restoration by small steps
**Inversion by Direct Iteration** (Delbracio & Milanfar, TMLR 2023) restores a photo by walking from the degraded
image (t = 1) to a clean one (t = 0): each step mixes a little of the network's guess of the clean image into the
current one. One step is plain regression; more steps trade a little PSNR for much more realistic detail.
"""

# (clean photo in examples/, the task it is degraded for); sources and licences: examples/SOURCES.md
EXAMPLES = [
    ("dogs.png", "motion_deblur"),
    ("ladybird.png", "defocus_deblur"),
    ("mountains.png", "sr4"),
    ("cups.png", "jpeg"),
    ("nuthatch.png", "denoise"),
]


def available_examples() -> list[tuple[str, str]]:
    """The examples, each photo moved to an offered task when its own task has no model yet."""
    return [
        (name, task_id if task_id in AVAILABLE_TASKS else AVAILABLE_TASKS[i % len(AVAILABLE_TASKS)])
        for i, (name, task_id) in enumerate(EXAMPLES)
    ]


def build_demo() -> gr.Blocks:
    task_choices = ([(AUTO.title, AUTO.task_id)] if AUTO_TASKS else []) + [
        (TASKS[task_id].title, task_id) for task_id in AVAILABLE_TASKS
    ]
    default = _task(DEFAULT_TASK)
    with gr.Blocks(title="InDI image restoration") as demo:
        # Made here (the examples fill it), placed in the Trajectory tab below.
        trajectory = gr.Gallery(
            label="Trajectory x_t",
            columns=TRAJECTORY_FRAMES,
            height=230,
            format="png",
            object_fit="contain",
            preview=False,
            render=False,
        )
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                task = gr.Dropdown(
                    task_choices, value=DEFAULT_TASK, label="Task", info=default.description, elem_id="task-dropdown"
                )
                image = gr.Image(
                    label="Degraded image",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    height=300,
                    elem_id="input-image",
                )
                degrade_first = gr.Checkbox(
                    False,
                    label="This is a clean photo: degrade it for the task first (seed 0) and show PSNR / LPIPS",
                )
                steps = gr.Slider(0, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps", info=STEPS_INFO)
                with gr.Accordion("Advanced", open=False):
                    eps = gr.Slider(
                        0.0,
                        0.1,
                        value=DEFAULT_EPS,
                        step=0.005,
                        label="Path noise eps",
                        info="Noise added along the walk; different seeds then give different plausible results "
                        "(0 = deterministic). Reset to the model's training value when the task changes.",
                    )
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=2**32 - 1)
                    noise_level = gr.Slider(
                        0,
                        50,
                        value=0,
                        step=1,
                        label="Known noise level σ (out of 255)",
                        info="Denoising only: start the walk at t = σ / 50 (strength). 0 = unknown: estimated from the image.",
                        visible=default.sigma_max is not None,
                    )
                    with gr.Row():
                        region_x = gr.Slider(
                            0, 100, value=50, step=1, label="Region x (%)",
                            info="A photo larger than the Space restores at once: where the centre of the "
                            "full-resolution region lies (0 = left edge).",
                        )  # fmt: skip
                        region_y = gr.Slider(0, 100, value=50, step=1, label="Region y (%)", info="0 = top edge.")
                    start = gr.Slider(
                        0, 1, value=0, step=0.05, label="Start t",
                        info="Where the walk starts, by hand: 1 = as degraded as the model was trained for. "
                        "0 = estimated from the image (or 1 for a model without an estimator).",
                    )  # fmt: skip
                run = gr.Button("Restore", variant="primary", elem_id="restore-button")
            with gr.Column(scale=3, min_width=360):
                slider = gr.ImageSlider(
                    label="Before / after",
                    format="png",
                    type="pil",
                    buttons=["download", "fullscreen"],
                    max_height=560,
                    elem_id="before-after",
                )
                report = gr.Markdown(
                    "Pick an example below, or upload a degraded photo and press **Restore**.",
                    label="Report",
                    elem_id="report",
                )
        gr.Examples(
            examples=[[str(EXAMPLES_DIR / name), task_id, True] for name, task_id in available_examples()],
            inputs=[image, task, degrade_first],
            outputs=[slider, report, trajectory],
            fn=gpu_handler(run_example),
            cache_examples=True,
            cache_mode="lazy",
            visible_columns=[0],
            label="Examples: clean photos, degraded on the fly for their task "
            "(motion blur, defocus, 4× super-resolution, JPEG, noise)",
        )
        with gr.Tabs():
            with gr.Tab("Trajectory"):
                gr.Markdown(
                    "The walk from the degraded image (t = 1) to the result (t = 0): each frame is the image x_t "
                    "after a step. Detail appears gradually as t goes down."
                )
                trajectory.render()
            with gr.Tab("Uncertainty"):
                gr.Markdown(
                    "Restoration is ambiguous: many clean images fit one degraded photo. Draw K restorations with "
                    "different seeds (one batched pipeline call, same steps / eps / noise level as above) and see "
                    "their mean and where they disagree."
                )
                with gr.Row():
                    samples = gr.Slider(2, MAX_SAMPLES, value=4, step=1, label="Samples K", scale=3)
                    sample_button = gr.Button("Draw K samples", scale=1)
                with gr.Row():
                    mean_image = gr.Image(label="Mean of the K samples", format="png", type="pil")
                    heatmap = gr.Image(label="Per-pixel standard deviation", format="png", type="pil")
                uncertainty_report = gr.Markdown(label="Uncertainty report")

        params = [image, task, steps, seed, eps, noise_level, degrade_first]
        later = [region_x, region_y, start]  # after the older parameters, so positional callers keep working
        task.change(on_task_change, task, [task, image, eps, noise_level], queue=False, api_visibility="private")
        run.click(
            gpu_handler(restore),
            params + later,
            [slider, report, trajectory],
            api_name="restore",
            concurrency_limit=1,
            concurrency_id="model",
            preprocess=False,  # the handler opens the upload itself (see _upload_path)
        )
        sample_button.click(
            gpu_handler(sample_uncertainty),
            params + [samples] + later,
            [mean_image, heatmap, uncertainty_report],
            api_name="uncertainty",
            concurrency_limit=1,
            concurrency_id="model",
            preprocess=False,  # the handler opens the upload itself (see _upload_path)
        )
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch(max_file_size="10mb")
