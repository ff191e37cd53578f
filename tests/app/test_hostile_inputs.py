"""Hostile input files (issue 7), for the library, the CLI and the app: one table, one row per kind of file.

Each row either restores correctly (the right size, upright, the same kind of image, close to the input: the tiny
test network is close to the identity) or fails with a message that names the problem, within a bounded time and
memory, and the process keeps serving: after every bad file a good one is still restored.

- Library: `open_image_file` (the one file opener the CLI and the app share) + `InDIPipeline`, in this process.
- CLI: one `indi restore` subprocess on every row's file plus a good one (one error line per bad file).
- App: the real app.py in one subprocess (a tiny jpeg model, INDI_MODEL_DIR), called with gradio_client.

Policies the rows pin down: an animated GIF (or APNG, animated WebP, multi-page TIFF) is refused, not cut to its
first frame; a 16-bit PNG is read at 16 bits ([0, 1] = value / 65535; 16-bit RGB PNGs are read by Pillow at 8 bits)
and restored as an 8-bit PNG by the library and the app, while `indi restore` keeps it at 16 bits (pypng); the library and the CLI refuse more than 50 MP (`DEFAULT_MAX_PIXELS`, counted at the
restored size; `indi restore --max-megapixels` changes it); the app restores a full-resolution region of at most
2.1 MP (INDI_APP_MAX_PIXELS) of a larger photo, refuses photos over 60 MP (INDI_APP_MAX_PHOTO_PIXELS) and images of
less than 8 px on a side. An 8000x8000 photo (64 MP) does restore through the automatic tiling with the limit lifted
(`--max-megapixels 0`: ~60 s and 5.9 GB peak with the tiny network, 1 step, on a 2-core CPU), too slow and large for
a test; by default it is refused from its header, before any pixel is decoded.
All files are generated here; none is committed.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_pipeline, save_tiny_repo

from indi_pipeline.image_io import ImageFileError, open_image_file, to_image_batches
from indi_pipeline.photo_files import png_bit_depth, read_16bit_png

REPO_ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 30  # per file, for the library and the app (one request)
CLI_TIME_LIMIT_S = 240  # the whole CLI run, interpreter start-up and every file included
MEMORY_LIMIT_MB = 2000  # peak resident memory of the CLI run and of the app server
MAX_MEAN_ERROR = 20  # grey levels of 255: restored vs the expected upright 8-bit input (the network is near-identity)


# --------------------------------------------------------------------------------------------------- the files
def _noise(width: int, height: int, channels: int, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: for the files Pillow will not write (16-bit RGB) or that lie about their size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _cut_in_half(image: PIL.Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]  # a valid header, cut inside the pixel data


def _saved(image: PIL.Image.Image, reference: PIL.Image.Image | None = None):
    """A maker that saves `image` (format from the file name); the expected result is `reference` (default: the
    image itself)."""

    def make(path: Path) -> PIL.Image.Image:
        image.save(path)
        return image if reference is None else reference

    return make


def _written(data: bytes | Callable[[], bytes], reference: PIL.Image.Image | None = None):
    """A maker that writes raw bytes (or what a function returns, for bytes made only when the file is);
    `reference`: the expected result, if any."""

    def make(path: Path) -> PIL.Image.Image | None:
        path.write_bytes(data() if callable(data) else data)
        return reference

    return make


def _decoded_jpeg(image: PIL.Image.Image):
    """A maker for a JPEG whose expected result is Pillow's own decoding of it (JPEG is lossy), as RGB."""

    def make(path: Path) -> PIL.Image.Image:
        image.save(path, quality=95)
        with PIL.Image.open(path) as decoded:
            return decoded.convert("RGB")

    return make


def _exif_rotated(path: Path) -> PIL.Image.Image:
    """A 16x24 (upright) photo stored on its side, 24x16, with EXIF orientation 6 (rotate 90° clockwise to view)."""
    blocks = np.kron([[0, 255], [255, 0], [128, 0]], np.ones((8, 8)))  # no two rotations of it look alike
    upright = PIL.Image.fromarray(blocks.astype(np.uint8)).convert("RGB")
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    upright.transpose(PIL.Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif.tobytes())
    return upright


def _animated_gif(path: Path) -> None:
    frames = [PIL.Image.new("RGB", (16, 12), (80 * i, 40, 200 - 60 * i)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _to_8bit(values: np.ndarray, mode: str) -> PIL.Image.Image:
    return PIL.Image.fromarray((values / 257.0).round().astype(np.uint8), mode)


def _png_rows(values: np.ndarray) -> bytes:
    """16-bit pixels as PNG scanlines (filter byte 0, big-endian samples)."""
    return b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)


def _large_gray_png() -> bytes:
    return _raw_png(8000, 8000, 8, 0, (b"\x00" + b"\x80" * 8000) * 8000)  # 64 MP, a 60 kB file


RESTORES = None  # an expectation: the row restores (its reference is the expected upright 8-bit image)


@dataclass(frozen=True)
class Row:
    filename: str
    make: Callable[[Path], PIL.Image.Image | None]  # writes the file; returns the expected result (None: refused)
    library: str | None  # RESTORES, or a regex the library's ImageFileError must match
    cli: str | None  # ... the CLI's error line
    app: str | None  # ... the app's error


def everywhere(expected: str | None) -> tuple[str | None, str | None, str | None]:
    """The same expectation for the library, the CLI and the app."""
    return expected, expected, expected


NOISE = PIL.Image.fromarray(_noise(32, 24, 3))
BITS = PIL.Image.fromarray(_noise(16, 12, 1) > 127)  # mode "1"
# 16 bits: every gray value distinct and most not a multiple of 257, so that reading them at 8 bits would show.
GRAY16 = np.linspace(0, 65535, 16 * 12).round().astype(np.uint16).reshape(12, 16)
RGB16 = np.random.default_rng(1).integers(0, 65536, (12, 16, 3)).astype(np.uint16)
TOO_BIG = r"too many pixels: 8000x8000 px = 64\.00 MP; the limit is "
TOO_SMALL = r"px; it needs at least 8 px on each side"
BOMB = r"too many pixels: the header claims 50000x50000 px = 2500\.00 MP; the limit is "
HTML = b"<!DOCTYPE html>\n<html><head><title>Photo</title></head><body></body></html>\n"

# One row per hostile input of the matrix in issue 7 (the ids are its rows): file name, how to make it, then what the
# library, the CLI and the app do: RESTORES, or a regex their error must match.
MATRIX = {
    "truncated-png": Row(
        "truncated-png.png", _written(_cut_in_half(NOISE, "PNG")), *everywhere("truncated or damaged")
    ),
    "truncated-jpeg": Row(
        "truncated-jpeg.jpg", _written(_cut_in_half(NOISE, "JPEG")), *everywhere("truncated or damaged")
    ),
    "zero-byte": Row("zero-byte.png", _written(b""), *everywhere(r"the file is empty \(0 bytes\)")),
    "text-named-png": Row(
        "text-named-png.png",
        _written(b"These are my notes, saved with a .png name.\n"),
        *everywhere("not an image: a text file"),
    ),
    "html": Row("html.jpg", _written(HTML), *everywhere("not an image: an HTML page")),
    "decompression-bomb": Row(
        "decompression-bomb.png",
        _written(_raw_png(50000, 50000, 8, 2, b"")),
        BOMB + "50.00 MP",
        BOMB + "50.00 MP",
        BOMB + r"60\.00 MP",  # the app's limit for a photo it cuts a region from (INDI_APP_MAX_PHOTO_PIXELS)
    ),
    "png-16bit": Row(
        "png-16bit.png", _saved(PIL.Image.fromarray(GRAY16), _to_8bit(GRAY16, "L")), *everywhere(RESTORES)
    ),
    "png-16bit-rgb": Row(
        "png-16bit-rgb.png",
        _written(_raw_png(16, 12, 16, 2, _png_rows(RGB16)), _to_8bit(RGB16, "RGB")),
        *everywhere(RESTORES),
    ),
    "cmyk-jpeg": Row(
        "cmyk-jpeg.jpg", _decoded_jpeg(PIL.Image.fromarray(_noise(16, 12, 4), "CMYK")), *everywhere(RESTORES)
    ),
    "palette": Row("palette.png", _saved(NOISE.quantize(16), NOISE.quantize(16).convert("RGB")), *everywhere(RESTORES)),
    "1-bit": Row("1-bit.png", _saved(BITS, BITS.convert("L")), *everywhere(RESTORES)),
    "rgba": Row("rgba.png", _saved(PIL.Image.fromarray(_noise(16, 12, 4), "RGBA")), *everywhere(RESTORES)),
    "la": Row("la.png", _saved(PIL.Image.fromarray(_noise(16, 12, 2), "LA")), *everywhere(RESTORES)),
    "exif-rotated-jpeg": Row("exif-rotated-jpeg.jpg", _exif_rotated, *everywhere(RESTORES)),
    "animated-gif": Row(
        "animated-gif.gif",
        _animated_gif,
        *everywhere(r"an animated or multi-page GIF \(3 frames\): only still images are restored"),
    ),
    "1x1": Row("1x1.png", _saved(PIL.Image.new("RGB", (1, 1), (200, 120, 40))), RESTORES, RESTORES, "1x1 " + TOO_SMALL),
    "7x13": Row("7x13.png", _saved(PIL.Image.fromarray(_noise(7, 13, 3))), RESTORES, RESTORES, "7x13 " + TOO_SMALL),
    "8000x8000": Row(
        "8000x8000.png",
        _written(_large_gray_png),
        TOO_BIG + "50.00 MP",
        TOO_BIG + r"50\.00 MP; --max-megapixels sets the limit",
        TOO_BIG + r"60\.00 MP",
    ),
}
ROWS = [pytest.param(row_id, id=row_id) for row_id in MATRIX]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, tuple[Path, PIL.Image.Image | None]]:
    """Every row's file, and the image its restoration should be close to (None for files that cannot be)."""
    folder = tmp_path_factory.mktemp("hostile")
    files = {}
    for row_id, row in MATRIX.items():
        path = folder / row.filename
        files[row_id] = path, row.make(path)
    return files


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.png"
    PIL.Image.fromarray(_noise(24, 16, 3, seed=7)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return save_tiny_repo(tmp_path_factory.mktemp("models") / "indi-jpeg", task="jpeg")


def _expected_mode(reference: PIL.Image.Image, surface: str) -> str:
    """The pipeline gives back the input's kind of image; the app turns everything into 8-bit RGB(A) first."""
    if surface == "app":
        return "RGBA" if "A" in reference.mode else "RGB"
    return reference.mode


def check_restored(restored: PIL.Image.Image, reference: PIL.Image.Image, surface: str) -> None:
    """Right size (upright), right kind of image, alpha passed through untouched, pixels close to the input."""
    assert restored.size == reference.size
    assert restored.mode == _expected_mode(reference, surface)
    if "A" in reference.mode:
        assert np.array_equal(np.asarray(restored.getchannel("A")), np.asarray(reference.getchannel("A")))
    color = "L" if reference.mode in ("L", "LA") else "RGB"
    difference = np.abs(np.asarray(restored.convert(color), np.float32) - np.asarray(reference.convert(color), float))
    assert difference.mean() < MAX_MEAN_ERROR, f"mean error {difference.mean():.1f} grey levels"


# ------------------------------------------------------------------------------------------------------ library
@pytest.fixture(scope="module")
def pipe():
    return make_tiny_pipeline(eps=0.02, perturb=False)  # the weights of the CLI's and the app's tiny repo


def _library_restore(pipe, path: Path) -> PIL.Image.Image:
    image = open_image_file(path)
    return pipe(image, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).images[0]


def check_row(surface: str, row_id: str, hostile, good: Path, restore: Callable[[Path], PIL.Image.Image], error):
    """A row for the library or the app: the file restores correctly, or `restore` raises `error` with the row's
    message, within TIME_LIMIT_S; then a good file is still restored."""
    path, reference = hostile[row_id]
    expected = getattr(MATRIX[row_id], surface)
    start = time.perf_counter()
    if expected is RESTORES:
        check_restored(restore(path), reference, surface)
    else:
        with pytest.raises(error, match=expected):
            restore(path)
    assert time.perf_counter() - start < TIME_LIMIT_S
    assert restore(good).size == (24, 16)  # still serving


@pytest.mark.parametrize("row_id", ROWS)
def test_library(row_id, hostile, good, pipe):
    check_row("library", row_id, hostile, good, lambda path: _library_restore(pipe, path), ImageFileError)


def test_16bit_png_is_read_at_16_bits(hostile):
    """[0, 1] values of a 16-bit grayscale PNG are value / 65535 exactly; Pillow reads 16-bit RGB PNGs at 8 bits."""
    gray = to_image_batches(open_image_file(hostile["png-16bit"][0]))[0]
    assert gray.grayscale
    np.testing.assert_allclose(gray.rgb[0, 0].numpy(), GRAY16 / 65535.0, atol=1e-7)
    rgb = to_image_batches(open_image_file(hostile["png-16bit-rgb"][0]))[0]
    np.testing.assert_allclose(rgb.rgb[0].permute(1, 2, 0).numpy(), (RGB16 >> 8) / 255.0, atol=1e-7)


def test_messages_say_what_the_file_is(tmp_path):
    """Files Pillow cannot identify are named by what they look like."""
    samples = {
        "drawing.png": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
        "scan.jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        "iphone.jpg": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "brand 'heic'"),
        "cut.png": (b"\x89PNG\r\n\x1a\n\x00\x00", r"truncated or damaged \(a PNG file"),
        "noise.png": (bytes(range(1, 200)) * 3, "unknown format"),
    }
    for name, (data, message) in samples.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageFileError, match=message):
            open_image_file(tmp_path / name)
    for path, message in ((tmp_path, "a folder"), (tmp_path / "missing.png", "no such file")):
        with pytest.raises(ImageFileError, match=message):
            open_image_file(path)


# ---------------------------------------------------------------------------------------------------------- CLI
# `indi restore` (cli.main, as `python -m indi_pipeline` runs it) reporting its own peak resident memory.
CLI_WITH_PEAK_MEMORY = (
    "import resource, sys\n"
    "from indi_pipeline.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.fixture(scope="module")
def cli_run(hostile, good, tiny_repo, tmp_path_factory):
    """One `indi restore` of every row's file and a good one: (the result, the output folder)."""
    out = tmp_path_factory.mktemp("cli_out")
    threads = os.environ.get("INDI_TEST_THREADS", "1")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS=threads)
    command = [
        sys.executable,
        "-c",
        CLI_WITH_PEAK_MEMORY,
        "restore",
        *(str(p) for p, _ in hostile.values()),
        str(good),
        "--task",
        "jpeg",
        "--model",
        str(tiny_repo),
        "--steps",
        "1",
        "--output-dir",
        str(out),
        "--device",
        "cpu",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=CLI_TIME_LIMIT_S)
    return result, out, time.perf_counter() - start


SIXTEEN_BIT_ROWS = ("png-16bit", "png-16bit-rgb")


@pytest.mark.slow
@pytest.mark.parametrize("row_id", ROWS)
def test_cli(row_id, hostile, cli_run):
    path, reference = hostile[row_id]
    result, out, _ = cli_run
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"indi: error: {path}:")]
    output = out / f"{path.stem}_jpeg_1steps.png"
    expected = MATRIX[row_id].cli
    if expected is RESTORES and row_id in SIXTEEN_BIT_ROWS:  # the CLI keeps 16 bits (photo_files)
        assert not lines, lines
        assert png_bit_depth(output) == 16
        restored = read_16bit_png(output)[..., 0 if row_id == "png-16bit" else slice(None)] / 257.0
        assert restored.shape[:2] == reference.size[::-1]
        assert np.abs(restored - np.asarray(reference, float)).mean() < MAX_MEAN_ERROR
    elif expected is RESTORES:
        assert not lines, lines
        with PIL.Image.open(output) as restored:
            check_restored(restored, reference, "cli")
    else:
        assert len(lines) == 1, result.stderr[-3000:]
        assert re.search(expected, lines[0]), lines[0]
        assert not output.exists()


@pytest.mark.slow
def test_cli_keeps_going_within_bounded_time_and_memory(cli_run):
    result, out, seconds = cli_run
    refused = sum(MATRIX[row_id].cli is not RESTORES for row_id in MATRIX)
    assert result.returncode == 1
    assert f"indi: {refused} input(s) failed, {len(MATRIX) - refused + 1} written" in result.stderr
    assert (out / "good_jpeg_1steps.png").is_file()  # the last file, after every hostile one
    peak_mb = int(result.stderr.rsplit("peak RSS ", 1)[1].split()[0])
    assert peak_mb < MEMORY_LIMIT_MB, f"the CLI peaked at {peak_mb} MB"
    assert seconds < CLI_TIME_LIMIT_S


# ---------------------------------------------------------------------------------------------------------- app
@pytest.fixture(scope="module")
def app(tiny_repo, tmp_path_factory):
    """The real app.py on a free port, serving the tiny jpeg repo: (gradio_client.Client, the server process)."""
    gradio_client = pytest.importorskip("gradio_client")
    from benchmarks.app_server import running_app_process

    with running_app_process(tmp_path_factory.mktemp("app"), INDI_MODEL_DIR=str(tiny_repo.parent)) as (url, process):
        yield gradio_client.Client(url, verbose=False), process


def _app_restore(client, path: Path) -> PIL.Image.Image:
    from gradio_client import handle_file

    job = client.submit(handle_file(str(path)), task="jpeg", steps=1, api_name="/restore")
    (_, after), _, _ = job.result(timeout=TIME_LIMIT_S)
    with PIL.Image.open(after) as restored:
        restored.load()
        return restored


@pytest.mark.slow
@pytest.mark.parametrize("row_id", ROWS)
def test_app(row_id, hostile, good, app):
    from gradio_client.exceptions import AppError

    client, _ = app
    check_row("app", row_id, hostile, good, lambda path: _app_restore(client, path), AppError)


@pytest.mark.slow
def test_app_server_memory_stays_bounded(app):
    """Runs after the rows: the server is alive and never held more than MEMORY_LIMIT_MB (peak, from /proc)."""
    _, process = app
    assert process.poll() is None
    status = Path(f"/proc/{process.pid}/status")
    if not status.exists():
        pytest.skip("no /proc on this system")
    peak_kb = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    assert peak_kb / 1024 < MEMORY_LIMIT_MB, f"the app server peaked at {peak_kb // 1024} MB"
