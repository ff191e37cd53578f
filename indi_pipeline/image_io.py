"""Image files and user images (PIL, numpy, torch; RGB, grayscale, alpha) to the pipeline's RGB tensors and back.

`open_image_file` is the one way the CLI and the app open an image file: it decodes it fully and turns every way a
file can be unusable into an `ImageFileError` that names the problem.

The network sees RGB in [0, 1]. Grayscale is restored as gray RGB and averaged back; an alpha channel is set aside
untouched (only resized with the image for super-resolution) and put back on the output.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from .jpeg_quality import jpeg_quality_of, quantization_tables
from .limits import DEFAULT_MAX_PIXELS

# Modes PIL can hold that we convert to a float image; anything else is refused by name.
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_CONVERTED_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
SUPPORTED_MODES = _GRAY_MODES | _ALPHA_MODES | _CONVERTED_TO_RGB | {"P", "RGB"}


# First bytes of files Pillow cannot identify, so that the error can say what the file is.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_OTHER_SIGNATURES = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or an Office document)"))


@dataclass
class ImageBatch:
    """RGB pixels (N, 3, H, W) in [0, 1] plus what is needed to give the user back the same kind of image."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None  # (N, 1, H, W) or None
    grayscale: bool
    # A PIL image read from a JPEG file: the IJG quality of its tables (`jpeg_quality`), for strength="auto".
    jpeg_quality: int | None = None


def _check_finite_and_range(array: torch.Tensor, what: str) -> None:
    if array.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(array.shape)})")
    if not torch.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or Inf values")


def _pil_to_array(image: PIL.Image.Image) -> np.ndarray:
    """A PIL image as float32 H x W x C in [0, 1], C in {1, 2, 3, 4}, upright per its EXIF orientation."""
    image = PIL.ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in _CONVERTED_TO_RGB:
        image = image.convert("RGB")
    elif mode in ("RGBa", "La"):
        image = image.convert(mode.upper())
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if array.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        return np.clip(array / peak, 0.0, 1.0)[..., None]
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[..., None]
    if mode == "1":
        image = image.convert("L")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"unsupported PIL image mode {image.mode!r}")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


class ImageFileError(ValueError):
    """An image file that cannot be restored; the message names the problem (empty, not an image, truncated...)."""


class ImageTooLargeError(ImageFileError):
    """An image file with more pixels than the limit (the message names its size and the limit)."""


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.2f} MP"


def size_problem(width: int, height: int, max_pixels: int | None, scale: int = 1, count: int = 1) -> str | None:
    """None if ``count`` images of width x height, restored ``scale`` times larger, fit ``max_pixels`` (None: no
    limit); else the sizes and the limit, e.g. ``"8000x8000 px = 64.00 MP; the limit is 50.00 MP"``."""
    out_w, out_h = width * scale, height * scale
    pixels = out_w * out_h * count
    if max_pixels is None or pixels <= max_pixels:
        return None
    walk = f", restored {scale}x larger to {out_w}x{out_h}" if scale > 1 else ""
    batch = f", x {count} samples" if count > 1 else ""
    return f"{width}x{height} px{walk}{batch} = {megapixels(pixels)}; the limit is {megapixels(max_pixels)}"


def one_line(message: object) -> str:
    """A message on one line (error texts from Pillow or the OS can hold newlines and runs of spaces)."""
    return " ".join(str(message).split())


def _damaged(error: Exception) -> ImageFileError:
    return ImageFileError(f"the image data is truncated or damaged ({one_line(error)})")


def _unidentified(path: os.PathLike | str) -> str:
    """Why Pillow could not identify a file, from its first bytes: a damaged image header, or what the file is instead
    (HTML, SVG, text, PDF, HEIC...)."""
    with open(path, "rb") as file:
        head = file.read(512)
    for signature, kind in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return f"the image data is truncated or damaged (a {kind} file whose header cannot be read)"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "the image data is truncated or damaged (a WebP file whose header cannot be read)"
    for signature, kind in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"not an image: {kind}"
    if head[4:8] == b"ftyp":  # ISO media: HEIC/HEIF (iPhone photos), AVIF without Pillow's AVIF support, MP4
        brand = head[8:12].decode("ascii", "replace").strip()
        return f"not an image Pillow can decode: an ISO media file (brand {brand!r}: HEIC/HEIF photo or a video)"
    try:
        text = head.decode("utf-8") if b"\x00" not in head else None
    except UnicodeDecodeError as error:  # a multi-byte character cut by the 512-byte window still counts as text
        text = head[: error.start].decode("utf-8") if error.start > len(head) - 4 else None
    if text is None:
        return f"not an image: a file of unknown format (it starts with bytes {head[:8].hex(' ')})"
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")) or "<html" in start or "<body" in start:
        return "not an image: an HTML page (a web page saved in place of the picture?)"
    if "<svg" in start:
        return "not an image: an SVG drawing (a vector format: export it as PNG first)"
    if start.startswith("<?xml"):
        return "not an image: an XML file"
    return f"not an image: a text file (it starts with {one_line(text)[:40]!r})"


def _claimed_size(path: os.PathLike | str, error: Exception) -> str:
    """The size a file's header claims, read without Pillow's decompression-bomb check (for the error message)."""
    with open(path, "rb") as file:
        prefix = file.read(16)
        for name in PIL.Image.ID:  # Pillow's registered formats, as Image.open tries them
            factory, accept = PIL.Image.OPEN[name]
            try:
                accepted = accept is None or accept(prefix)  # a str is Pillow's "recognised, but cannot open"
                if accepted and not isinstance(accepted, str):
                    file.seek(0)
                    width, height = factory(file, str(path)).size
                    return f"{width}x{height} px = {megapixels(width * height)}"
            except Exception:  # noqa: BLE001 - not this format; in the end, Pillow's pixel count is enough
                continue
    count = re.search(r"\((\d+) pixels\)", str(error))
    return megapixels(int(count.group(1))) if count else "too large"


def open_image_file(path: os.PathLike | str, max_pixels: int | None = DEFAULT_MAX_PIXELS, scale: int = 1):
    """Opens and fully decodes one still image file, upright per its EXIF orientation; keeps its mode (16-bit
    grayscale stays ``"I;16"``, which the pipeline reads at 16 bits; its output is 8-bit).

    Raises `ImageFileError`, whose message names the problem, for: a missing, unreadable or empty (0-byte) file; a
    file that is not an image (the message says what it looks like: text, HTML, SVG, PDF, HEIC...); more than
    ``max_pixels`` pixels (`ImageTooLargeError`; ``None``: no limit but Pillow's decompression-bomb one, ~179 MP),
    counted at the restored size (``scale`` times larger on each side for super-resolution) and checked from the
    header before any pixel is decoded, so a decompression bomb costs nothing; an animation or multi-page file
    (animated GIF/PNG/WebP, multi-page TIFF: only still images are restored; an MPO camera JPEG gives its primary
    image); truncated or damaged data; a pixel mode the pipeline cannot convert.
    """
    try:
        if os.path.isdir(path):
            raise ImageFileError("a folder, not an image file")
        if os.path.getsize(path) == 0:
            raise ImageFileError("the file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)  # max_pixels decides
            try:
                image = PIL.Image.open(path)
            except PIL.Image.DecompressionBombError as error:  # over Pillow's own limit, above any sane max_pixels
                limit = min(2 * PIL.Image.MAX_IMAGE_PIXELS, max_pixels or 2 * PIL.Image.MAX_IMAGE_PIXELS)
                raise ImageTooLargeError(
                    f"too many pixels: the header claims {_claimed_size(path, error)}; the limit is "
                    f"{megapixels(limit)} (not decoded: a possible decompression bomb)"
                ) from None
            except PIL.UnidentifiedImageError:
                raise ImageFileError(_unidentified(path)) from None
    except FileNotFoundError:
        raise ImageFileError("no such file") from None
    except OSError as error:
        if error.errno is None:  # raised by Pillow: the header is cut short ("Truncated File Read") or corrupt
            raise _damaged(error) from None
        raise ImageFileError(f"cannot read the file: {one_line(error)}") from None  # permissions, a broken disk...
    with image:
        problem = size_problem(image.width, image.height, max_pixels, scale)
        if problem:
            raise ImageTooLargeError(f"too many pixels: {problem}")
        try:
            if getattr(image, "is_animated", False) and image.format != "MPO":
                raise ImageFileError(
                    f"an animated or multi-page {image.format} ({image.n_frames} frames): only still images are "
                    "restored; save the frame you want as a PNG"
                )
            image.load()  # decode now: truncated or corrupt data fails here, not later inside the pipeline
            upright = PIL.ImageOps.exif_transpose(image)
            tables = quantization_tables(image)
            if tables:  # the upright copy is a plain image: keep the file's JPEG tables for strength="auto"
                upright.info["quantization"] = tables
        except ImageFileError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
            raise _damaged(error) from None
    if upright.width == 0 or upright.height == 0:
        raise ImageFileError(f"the image is empty ({upright.width}x{upright.height} px)")
    if upright.mode not in SUPPORTED_MODES:
        supported = ", ".join(sorted(SUPPORTED_MODES))
        raise ImageFileError(f"pixel mode {upright.mode!r} is not supported (supported: {supported})")
    return upright


def _numpy_to_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise ValueError(f"unsupported numpy dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")


def _split_channels(pixels: torch.Tensor, source: str) -> ImageBatch:
    """pixels: (N, C, H, W) float; C in 1..4 -> RGB + optional alpha."""
    channels = pixels.shape[1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{source} has {channels} channels; expected 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)")
    _check_finite_and_range(pixels, source)
    grayscale = channels in (1, 2)
    color = pixels[:, :1].expand(-1, 3, -1, -1) if grayscale else pixels[:, :3]
    alpha = pixels[:, channels - 1 :] if channels in (2, 4) else None
    return ImageBatch(rgb=color.contiguous(), alpha=alpha, grayscale=grayscale)


def to_image_batches(image, name: str = "image") -> list[ImageBatch]:
    """Converts any accepted input into a list of same-size batches (one per distinct input image size).

    Accepted: a PIL image or a list of them; numpy H x W, H x W x C or N x H x W x C (uint8, uint16 or float in
    [0, 1]); torch C x H x W or N x C x H x W floats in [0, 1]; or a list of numpy arrays / tensors.
    """
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise ValueError(f"{name} is an empty list")
        items = [to_image_batches(item, f"{name}[{i}]") for i, item in enumerate(image)]
        return [batch for group in items for batch in group]
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{name} is empty ({image.width}x{image.height})")
        array = _pil_to_array(image)
        batch = _split_channels(torch.from_numpy(array).permute(2, 0, 1)[None], f"{name} (PIL {image.mode})")
        quality = jpeg_quality_of(image)
        batch.jpeg_quality = None if quality is None else quality.quality
        return [batch]
    if isinstance(image, np.ndarray):
        array = _numpy_to_float(image)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"{name} must be H x W, H x W x C or N x H x W x C; got shape {image.shape}")
        return [_split_channels(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2), name)]
    if isinstance(image, torch.Tensor):
        if not torch.is_floating_point(image):
            raise ValueError(f"{name} is a {image.dtype} tensor; pass a float tensor in [0, 1]")
        tensor = image.detach().float()
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4:
            raise ValueError(f"{name} must be C x H x W or N x C x H x W; got shape {tuple(image.shape)}")
        return [_split_channels(tensor, name)]
    raise TypeError(f"{name} must be a PIL image, numpy array, torch tensor or a list of them; got {type(image)}")


def merge(batch_rgb: torch.Tensor, alpha: torch.Tensor | None, grayscale: bool) -> torch.Tensor:
    """Restored RGB (N, 3, H, W) back to the input's channel layout: gray if it was gray, alpha re-attached."""
    pixels = batch_rgb.mean(dim=1, keepdim=True) if grayscale else batch_rgb
    if alpha is not None:
        pixels = torch.cat([pixels, alpha.to(pixels)], dim=1)
    return pixels


def tensor_to_output(pixels: torch.Tensor, output_type: str):
    """(N, C, H, W) in [0, 1] -> "pt" (as is), "np" (N, H, W, C float32) or "pil" (list of PIL images)."""
    pixels = pixels.clamp(0.0, 1.0)
    if output_type == "pt":
        return pixels
    array = pixels.permute(0, 2, 3, 1).float().cpu().numpy()
    if output_type == "np":
        return array
    images = []
    for item in array:
        item = (item * 255.0).round().astype(np.uint8)
        # PIL infers L / LA / RGB / RGBA from the shape.
        images.append(PIL.Image.fromarray(item[..., 0] if item.shape[-1] == 1 else item))
    return images
