"""The ``indi`` command line: restore and degrade image files, list the task zoo, benchmark the network.

    indi restore photo.jpg more_photos/ --task motion_deblur --steps 10
    indi restore noisy.png --task denoise --sigma 25
    indi degrade clean.png --task sr4
    indi tasks
    indi bench --compare-unet          (a source checkout: runs benchmarks/bench.py)

Every restoration goes through :class:`InDIPipeline` (the CLI is a thin shell around it). One bad input file
gives one error line and does not stop the others; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .tasks import TASKS, get_task, start_text

# Extensions of the files taken from a folder given as an argument (files named explicitly are always tried).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm", ".tga")


class InputError(Exception):
    """A problem with one input file: reported on one line, the other files go on."""


# ------------------------------------------------------------------------------------------------------- helpers
def _error(path: object, message: object) -> None:
    from .image_io import one_line  # lazily, like every torch-importing module here: `indi --help` stays instant

    print(f"indi: error: {path}: {one_line(message)}", file=sys.stderr, flush=True)


def expand_inputs(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """Files named on the command line, plus the image files directly inside named folders (sorted).

    Returns ``(files, problems)``: a missing path or a folder without images is a problem, not a crash.
    """
    files, problems, seen = [], [], set()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                problems.append(f"indi: error: {path}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            candidates = found
        elif path.exists():
            candidates = [path]
        else:
            problems.append(f"indi: error: {path}: no such file or folder")
            candidates = []
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                files.append(candidate)
    return files, problems


def load_image(path: Path, max_megapixels: float, scale: int = 1):
    """`open_image_file` (decoded, upright) with the CLI's pixel limit, counted at the output size (``scale``); every
    way the file can be unusable becomes an :class:`InputError` naming the problem."""
    from .image_io import ImageFileError, ImageTooLargeError, open_image_file

    max_pixels = max(1, round(max_megapixels * 1e6)) if max_megapixels else None
    try:
        return open_image_file(path, max_pixels=max_pixels, scale=scale)
    except ImageTooLargeError as error:
        raise InputError(f"{error}; --max-megapixels sets the limit") from None
    except ImageFileError as error:
        raise InputError(error) from None


def _unique_output(path: Path, inputs: set[Path], written: set[Path]) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``... before the suffix if an input or an earlier output has that name."""
    candidate, counter = path, 1
    while candidate.resolve() in inputs or candidate.resolve() in written:
        counter += 1
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
    return candidate


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("indi: error: --device cuda was asked for, but torch sees no CUDA GPU (use --device cpu)")
    return name


def _process_share(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process: under `accelerate launch` with several processes, accelerate's
    PartialState (one GPU per process when there are GPUs); otherwise (0, 1, device)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    import torch
    from accelerate import PartialState

    # cpu=True makes accelerate set up its CPU (gloo) process group, as Accelerator does under ACCELERATE_USE_CPU.
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    if state.device.type == "cuda" and device != "cpu":
        device = str(state.device)
    return state.process_index, state.num_processes, device


# ------------------------------------------------------------------------------------------------- model loading
def load_pipeline(
    model: str | None, task_id: str, device: str = "cpu", compile: bool = False, dtype: str | None = None
):
    """The pipeline for ``task_id``: from ``model`` (folder or Hub id) if given, else the bundled repo
    ``get_task(task_id).local_path`` if it exists, else the Hub repo ``get_task(task_id).hub_repo_id``.

    Raises ``SystemExit`` with one clear message naming every place that was tried. ``compile``: see
    ``acceleration.compile_network``; ``dtype``: ``acceleration.resolve_dtype`` ("auto", "fp32", "bf16"; None reads
    $INDI_DTYPE).
    """
    from diffusers.utils import logging as diffusers_logging

    from .acceleration import optimize_for_inference
    from .image_io import one_line
    from .pipeline_indi import InDIPipeline

    diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar; the CLI prints its own lines

    def attempt(source: str):
        try:
            return InDIPipeline.from_pretrained(source), None
        except Exception as error:  # noqa: BLE001 - loading can fail in many library-specific ways; all are reported
            return None, one_line(f"{type(error).__name__}: {error}")

    if model is not None:
        local = Path(model).expanduser()
        if local.exists():
            pipe, reason = attempt(str(local))
            if pipe is None:
                raise SystemExit(f"indi: error: cannot load the model folder {model}: {reason}")
        elif model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise SystemExit(f"indi: error: cannot load the model {model!r}: no such folder, and not a Hub repo id")
        else:
            pipe, reason = attempt(model)
            if pipe is None:
                raise SystemExit(
                    f"indi: error: cannot load the model {model!r}: no local folder of that name, and the Hub repo "
                    f"failed: {reason}"
                )
    else:
        task = get_task(task_id)
        tried = []
        pipe = None
        if task.local_path.is_dir():
            pipe, reason = attempt(str(task.local_path))
            if pipe is None:
                tried.append(f"local folder {task.local_path} ({reason})")
        else:
            tried.append(f"local folder {task.local_path} (does not exist)")
        if pipe is None:
            pipe, reason = attempt(task.hub_repo_id)
            if pipe is None:
                tried.append(f"Hub repo {task.hub_repo_id} ({reason})")
                raise SystemExit(
                    f"indi: error: no model for task {task_id!r}: tried the {' and the '.join(tried)}. "
                    f"Train one (see train/), download it, or pass --model PATH_OR_REPO_ID."
                )
    trained_for = pipe.config.get("task") if hasattr(pipe.config, "get") else None
    if trained_for and trained_for != task_id:
        print(f"indi: warning: this model was trained for task {trained_for!r}, not {task_id!r}", file=sys.stderr)
    pipe.set_progress_bar_config(disable=True)
    try:
        return optimize_for_inference(pipe.to(device), compile=compile, dtype=dtype)
    except ValueError as error:  # a bad $INDI_DTYPE
        raise SystemExit(f"indi: error: {error}") from None


# -------------------------------------------------------------------------------------------------------- restore
def cmd_restore(args: argparse.Namespace) -> int:
    import torch

    from .acceleration import dtype_name
    from .photo_files import SUFFIXES, PhotoMetadata, png_bit_depth, read_16bit_png

    if args.quality is not None and (args.format == "png" or not 1 <= args.quality <= 100):
        raise SystemExit(
            "indi: error: --quality is for --format jpeg or webp only"
            if args.format == "png"
            else f"indi: error: --quality must be 1-100, got {args.quality}"
        )

    if args.task == "auto":
        return cmd_restore_auto(args)
    if args.upscale:
        raise SystemExit("indi: error: --upscale is for --task auto (for super-resolution alone: --task sr4)")
    task_id = args.task
    task = get_task(task_id)
    if args.steps is None:
        args.steps = task.default_steps
    if args.steps < 1:
        raise SystemExit(f"indi: error: --steps must be >= 1, got {args.steps}")
    strength = None  # the pipeline's default: "auto" where the repo has an estimator, else 1.0
    if args.sigma is not None:
        if task.sigma_max is None:
            raise SystemExit(f"indi: error: --sigma is for --task denoise only (task {task_id!r} has no noise level)")
        try:
            strength = task.strength_for_sigma(args.sigma / 255.0)
        except ValueError as error:
            raise SystemExit(f"indi: error: --sigma {args.sigma}: {error}") from None
    elif args.strength == "auto":
        strength = "auto"
    elif args.strength is not None:
        if not 0.0 < args.strength <= 1.0:
            raise SystemExit(f"indi: error: --strength must be in (0, 1], got {args.strength}")
        strength = args.strength
    if args.eps is not None and args.eps < 0:
        raise SystemExit(f"indi: error: --eps must be >= 0, got {args.eps}")

    files, problems = expand_and_report(args.images)
    if not files:
        return 1

    device = _resolve_device(args.device)
    rank, world_size, device = _process_share(device)
    # Under `accelerate launch`, each process restores every world_size-th file; every output depends only on its
    # own file and the seed, so the union is what one process would have written.
    files, problems = files[rank::world_size], problems if rank == 0 else []
    pipe = load_pipeline(args.model, task_id, device, compile=args.compile, dtype=args.dtype)
    if strength is None:
        strength = "auto" if pipe.estimator is not None else 1.0
    if strength == "auto" and pipe.estimator is None:
        raise SystemExit(
            "indi: error: --strength auto needs the model repo's start estimator (an estimator/ folder), and this "
            "one has none: pass --strength NUMBER" + (" or --sigma" if task.sigma_max is not None else "")
        )
    where = "estimated per image" if strength == "auto" else f"{strength:.3g}"
    print(
        f"restoring {len(files)} image(s): task {task_id}, {args.steps} steps, strength {where}, "
        f"seed {args.seed}, device {device}, {dtype_name(pipe.autocast_dtype)}"
        + (f", process {rank + 1}/{world_size}" if world_size > 1 else ""),
        flush=True,
    )

    def restore_one(path: Path):
        image = load_image(path, args.max_megapixels, scale=pipe.config.upscale_factor)
        sixteen_bit = args.format == "png" and png_bit_depth(path) == 16  # kept at 16 bits (pypng reads it)
        metadata = PhotoMetadata.of(image, bit_depth=16 if sixteen_bit else 8)
        generator = torch.Generator().manual_seed(args.seed)
        try:
            pixels = read_16bit_png(path, _orientation(path)) if sixteen_bit else image
            out = pipe(
                pixels,
                num_inference_steps=args.steps,
                strength=strength,
                generator=generator,
                eps=args.eps,
                output_type="np" if sixteen_bit else "pil",
            )
        except (ValueError, RuntimeError) as error:
            raise InputError(f"restoration failed: {error}") from None
        except MemoryError:
            raise InputError("restoration failed: out of memory (crop or downscale the image)") from None
        note = (
            f", {start_text(task, out.start_t[0], out.estimated_t[0], out.jpeg_quality[0])}"
            if strength == "auto"
            else ""
        )
        name = f"{path.stem}_{task_id}_{args.steps}steps{SUFFIXES[args.format]}"
        return image, out.images[0], name, note, metadata

    return process_files(files, problems, Path(args.output_dir), restore_one, args.format, args.quality)


def expand_and_report(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """The image files named by the arguments; prints a line per unusable argument, and one if none is left."""
    files, problems = expand_inputs(arguments)
    for problem in problems:
        print(problem, file=sys.stderr, flush=True)
    if not files:
        print("indi: error: no input images", file=sys.stderr)
    return files, problems


def cmd_restore_auto(args: argparse.Namespace) -> int:
    """`indi restore --task auto`: detect what each photo has with the bundled estimators and restore it in order
    (`auto_restore.restore_auto`), printing what was found and applied per file."""
    import torch

    from .auto_restore import CHAIN_ORDER, restore_auto
    from .photo_files import SUFFIXES, PhotoMetadata

    for flag, value in (("--model", args.model), ("--strength", args.strength), ("--sigma", args.sigma)):
        if value is not None:
            raise SystemExit(f"indi: error: {flag} is for one task; --task auto uses each task's bundled model")
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"indi: error: --steps must be >= 1, got {args.steps}")
    files, problems = expand_and_report(args.images)
    if not files:
        return 1
    device = _resolve_device(args.device)
    chain_tasks = [t for t in CHAIN_ORDER if get_task(t).bundled_estimator]
    if not chain_tasks:
        raise SystemExit("indi: error: --task auto needs bundled models with a start estimator; none was found")
    pipelines = {t: load_pipeline(None, t, device, compile=args.compile, dtype=args.dtype) for t in chain_tasks}
    if args.upscale:
        pipelines["sr4"] = load_pipeline(None, "sr4", device, compile=args.compile, dtype=args.dtype)
    print(f"restoring {len(files)} image(s) automatically: looking for {', '.join(chain_tasks)}", flush=True)

    def restore_one(path: Path):
        image = load_image(path, args.max_megapixels, scale=4 if args.upscale else 1)
        try:
            result = restore_auto(image, pipelines, num_inference_steps=args.steps, upscale=args.upscale,
                                  generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
        except (ValueError, RuntimeError) as error:
            raise InputError(f"restoration failed: {error}") from None
        return (
            image,
            result.pil(),
            f"{path.stem}_auto{SUFFIXES[args.format]}",
            f"; {result.report()}",
            PhotoMetadata.of(image),
        )

    return process_files(files, problems, Path(args.output_dir), restore_one, args.format, args.quality)


def _orientation(path: Path) -> int:
    import PIL.Image

    with PIL.Image.open(path) as image:
        return int(image.getexif().get(0x0112, 1))


def _size_text(result) -> str:
    """'WxH' of a PIL image or an H x W x C array."""
    width, height = (result.width, result.height) if hasattr(result, "width") else result.shape[1::-1]
    return f"{width}x{height}"


def process_files(
    files: list[Path], problems: list[str], output_dir: Path, convert, format: str = "png", quality: int | None = None
) -> int:
    """Writes ``convert(path) -> (input, output image, file name, note, metadata)`` per file (`photo_files`: the
    input's ICC profile and EXIF kept): one line per file, one error line per bad file (the others still run);
    returns the exit code (1 if any input failed)."""
    from .photo_files import save_photo

    inputs = {f.resolve() for f in files}
    written: set[Path] = set()
    failures = len(problems)
    for index, path in enumerate(files, 1):
        start = time.perf_counter()
        try:
            image, result, name, note, metadata = convert(path)
            target = _unique_output(output_dir / name, inputs, written)
            try:
                save_photo(result, target, metadata, format, quality)
            except ValueError as error:  # e.g. an alpha channel asked to go into a JPEG
                raise InputError(error) from None
            written.add(target.resolve())
        except InputError as error:
            failures += 1
            _error(path, error)
            continue
        except OSError as error:  # writing the output (disk full, permissions)
            failures += 1
            _error(path, f"cannot write the output: {error}")
            continue
        print(
            f"[{index}/{len(files)}] {path} ({image.width}x{image.height}) -> {target} "
            f"({_size_text(result)}{note}) {time.perf_counter() - start:.2f} s",
            flush=True,
        )
    if failures:
        print(f"indi: {failures} input(s) failed, {len(written)} written", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------------------------------------------- degrade
def cmd_degrade(args: argparse.Namespace) -> int:
    from .degradations import SR_SCALE, degrade_pil
    from .photo_files import PhotoMetadata

    task_id = args.task
    kwargs = {}
    for flag, key, owner, scale in (
        ("sigma", "sigma", "denoise", 255.0),
        ("quality", "quality", "jpeg", None),
        ("radius", "radius", "defocus_deblur", None),
    ):
        value = getattr(args, flag)
        if value is None:
            continue
        if task_id != owner:
            raise SystemExit(f"indi: error: --{flag} is for --task {owner} only")
        kwargs[key] = value / scale if scale else value

    files, problems = expand_and_report(args.images)
    if not files:
        return 1

    def degrade_one(path: Path):
        # Upright per EXIF (load_image), as the pipeline sees it, so that degraded and restored images line up.
        image = load_image(path, args.max_megapixels)
        if task_id == "sr4" and (image.width < SR_SCALE or image.height < SR_SCALE):
            raise InputError(f"is {image.width}x{image.height}; sr4 needs at least {SR_SCALE}x{SR_SCALE} px")
        try:
            degraded = degrade_pil(task_id, image, seed=args.seed, **kwargs)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"degradation failed: {error}") from None
        note = ""
        if task_id == "sr4" and (image.width % SR_SCALE or image.height % SR_SCALE):
            note = f", cropped to {image.width - image.width % SR_SCALE}x{image.height - image.height % SR_SCALE} first"
        return image, degraded, f"{path.stem}_{task_id}.png", note, PhotoMetadata.of(image)

    return process_files(files, problems, Path(args.output_dir), degrade_one)


# ---------------------------------------------------------------------------------------------------------- tasks
def cmd_tasks(args: argparse.Namespace) -> int:
    rows = [("task", "description", "steps", "local path", "present", "hub repo")]
    for task in TASKS.values():
        present = "yes" if task.local_path.is_dir() else "no"
        rows.append(
            (task.task_id, task.description, str(task.default_steps), str(task.local_path), present, task.hub_repo_id)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


# ---------------------------------------------------------------------------------------------------------- parser
def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _strength(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number in (0, 1], got {text!r}") from None


def _add_max_megapixels(parser: argparse.ArgumentParser, counted: str) -> None:
    from .limits import DEFAULT_MAX_PIXELS

    parser.add_argument(
        "--max-megapixels",
        type=_non_negative,
        default=DEFAULT_MAX_PIXELS / 1e6,
        metavar="MP",
        help=f"refuse an image with more megapixels than this, counted {counted}, from its header (default: "
        f"{DEFAULT_MAX_PIXELS / 1e6:g}; a CPU restore needs about 90 MB per megapixel); 0 = no limit but Pillow's "
        "(about 179 MP, against decompression bombs)",
    )


def run_benchmark(bench_args: list[str]) -> int:
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks" / "bench.py").is_file():
        raise SystemExit(
            "indi: error: `indi bench` needs a source checkout (an editable install: pip install -e .); "
            "the benchmarks are not part of the installed package"
        )
    command = [sys.executable, "-m", "benchmarks.bench", *bench_args]
    return subprocess.call(command, cwd=checkout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="indi",
        description="InDI image restoration (Inversion by Direct Iteration): restore, degrade, list tasks, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    task_ids = list(TASKS)

    restore = sub.add_parser(
        "restore",
        help="restore image files with a task's model",
        description="Restore image files. Writes OUTPUT_DIR/<stem>_<task>_<steps>steps.png for each input "
        "(never over an input file). Folders expand to the images inside them.",
    )
    restore.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    restore.add_argument(
        "--task",
        required=True,
        choices=["auto", *task_ids],
        help="restoration task (see `indi tasks`), or auto: detect what each photo has with the bundled models' "
        "estimators and restore it in order (JPEG, noise, blur)",
    )
    restore.add_argument("--upscale", action="store_true", help="with --task auto: also 4x super-resolution, last")
    restore.add_argument(
        "--model",
        default=None,
        metavar="PATH_OR_REPO_ID",
        help="pipeline folder or Hub repo id; default: the task's bundled model_cards/indi-<task> folder if present, "
        "else the Hub repo <org>/indi-<task>",
    )
    restore.add_argument(
        "--steps",
        type=int,
        default=None,
        help="number of InDI steps: 1 = plain regression (best PSNR, smooth), more = sharper, more realistic detail "
        "(default: the task's own, which `indi tasks` lists: its model card's recommended steps or fewer)",
    )
    start = restore.add_mutually_exclusive_group()
    start.add_argument(
        "--strength",
        type=_strength,
        default=None,
        help="where the walk starts: t in (0, 1], or 'auto' to estimate it per image with the repo's estimator "
        "(default: auto where the model repo has an estimator, else 1.0)",
    )
    start.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="denoise only: the known noise level on the 0-255 scale (e.g. 25); sets strength = sigma / sigma_max",
    )
    restore.add_argument(
        "--eps", type=float, default=None, help="path noise level; default: the model's scheduler setting"
    )
    restore.add_argument("--seed", type=int, default=0, help="random seed of the path noise (default: 0)")
    restore.add_argument("--output-dir", default="outputs", help="folder for the restored files (default: outputs)")
    restore.add_argument(
        "--format",
        default="png",
        choices=["png", "jpeg", "webp"],
        help="output file format (default: png, 16-bit where the input PNG is); the input's ICC colour profile and "
        "EXIF are kept, the orientation tag reset and the pixel dimensions updated",
    )
    restore.add_argument(
        "--quality",
        type=int,
        default=None,
        help="jpeg / webp quality 1-100 (default: 95; jpeg at 90 or more keeps full-resolution colour)",
    )
    restore.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: cuda if available)"
    )
    restore.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first: tens of seconds once (cached on disk), then faster steps; pays off "
        "for many images of one size or large tiled photos (see `indi bench --compile`)",
    )
    restore.add_argument(
        "--dtype",
        default=None,
        choices=["auto", "fp32", "bf16"],
        help="arithmetic of the network's forwards: auto = bf16 where the CPU (AVX-512 BF16, AMX) or GPU computes it "
        "natively, else fp32; the walk stays fp32 (default: $INDI_DTYPE, else auto)",
    )
    _add_max_megapixels(restore, "at the restored size (16x the input's pixels for sr4)")
    restore.set_defaults(func=cmd_restore)

    degrade = sub.add_parser(
        "degrade",
        help="degrade clean images the way a task expects its input",
        description="Degrade clean image files with a task's degradation (the one used in training). Writes "
        "OUTPUT_DIR/<stem>_<task>.png. For sr4 that is the 4x smaller low-resolution image (the input is cropped to "
        "a multiple of 4 first).",
    )
    degrade.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    degrade.add_argument("--task", required=True, choices=task_ids, help="degradation of this task")
    degrade.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the degradation (default: 0); independent of the path noise of `indi restore --seed`",
    )
    degrade.add_argument("--output-dir", default="outputs", help="folder for the degraded PNGs (default: outputs)")
    degrade.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="denoise only: noise level on the 0-255 scale (default: random in [0, 50])",
    )
    degrade.add_argument(
        "--quality", type=int, default=None, help="jpeg only: JPEG quality (default: random in [10, 50])"
    )
    degrade.add_argument(
        "--radius", type=float, default=None, help="defocus_deblur only: disk radius in px (default: random in [1, 6])"
    )
    _add_max_megapixels(degrade, "in the input")
    degrade.set_defaults(func=cmd_degrade)

    tasks = sub.add_parser("tasks", help="list the tasks and where their models are", description="List the task zoo.")
    tasks.set_defaults(func=cmd_tasks)

    # A thin entry point: the benchmarks live in the checkout's benchmarks/ folder, not in the library.
    bench = sub.add_parser(
        "bench",
        help="time the network and the pipeline on this machine (a source checkout's benchmarks/bench.py)",
        description="Runs `python -m benchmarks.bench ARGS` in this source checkout; see its --help.",
        add_help=False,  # main() hands every argument after `bench`, --help included, to the benchmark
    )
    bench.set_defaults(func=lambda args: run_benchmark([]))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``indi`` console script and ``python -m indi_pipeline``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return run_benchmark(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `indi tasks | head`: the reader left; exit quietly like other Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
