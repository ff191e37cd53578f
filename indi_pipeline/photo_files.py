"""Restored photos written the way photographers expect: the input's colour profile and camera data kept, 16 bits
kept where the input had them, PNG, JPEG or WebP.

A photo in Display P3 or Adobe RGB shows wrong colours in every colour-managed viewer once its ICC profile is gone,
so the profile travels byte for byte. EXIF travels too, with two tags changed: the orientation is reset (the
pixels were turned upright on reading) and the pixel dimensions follow the output (4x for super-resolution).

Pillow holds 16-bit grey images but not 16-bit colour ones, so 16-bit PNGs are read and written with pypng; the
colour profile and EXIF chunks are added to its output here (pypng writes neither).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

OUTPUT_FORMATS = ("png", "jpeg", "webp")
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
DEFAULT_QUALITY = {"jpeg": 95, "webp": 95}  # lossy output: high by default, the restoration is the point
ORIENTATION = 0x0112
EXIF_IFD = 0x8769
PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0xA002, 0xA003
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PhotoMetadata:
    """What of an input photo its restored file keeps: ICC profile bytes, EXIF bytes, and its bits per sample."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    bit_depth: int = 8

    @classmethod
    def of(cls, image: PIL.Image.Image, bit_depth: int = 8) -> PhotoMetadata:
        """The metadata of an opened photo (`image_io.open_image_file` keeps the file's in ``image.info``)."""
        exif = image.info.get("exif")
        return cls(image.info.get("icc_profile") or None, exif or None, bit_depth)

    def save_options(self, size: tuple[int, int]) -> dict:
        """Pillow ``save`` keywords that write this metadata into a file of ``size`` (width, height)."""
        options = {"icc_profile": self.icc_profile} if self.icc_profile else {}
        exif = self.exif_for(size)
        if exif:
            options["exif"] = exif
        return options

    def exif_for(self, size: tuple[int, int]) -> bytes | None:
        """The EXIF for an output of ``size`` (width, height): upright orientation, its pixel dimensions."""
        if not self.exif:
            return None
        exif = PIL.Image.Exif()
        exif.load(self.exif)
        exif[ORIENTATION] = 1  # the pixels are upright
        sub = exif.get_ifd(EXIF_IFD)
        if PIXEL_X_DIMENSION in sub or PIXEL_Y_DIMENSION in sub:
            sub[PIXEL_X_DIMENSION], sub[PIXEL_Y_DIMENSION] = size
        return exif.tobytes()


def png_bit_depth(path: str | Path) -> int | None:
    """Bits per sample of a PNG file from its header (None for any other file)."""
    with open(path, "rb") as file:
        head = file.read(26)
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


# PNG's eXIf chunk holds EXIF's TIFF structure (Pillow's bytes start with the "Exif\0\0" of JPEG's APP1 segment).
_EXIF_HEADER = b"Exif\x00\x00"
# How the EXIF orientation tag's values (2-8) turn the stored pixels upright, as PIL.ImageOps.exif_transpose does.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def read_16bit_png(path: str | Path, orientation: int = 1) -> np.ndarray:
    """A 16-bit PNG as uint16 H x W x C (C = 1-4), turned upright per ``orientation`` (its EXIF tag)."""
    import png  # pypng: only needed for 16-bit files

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    if info["bitdepth"] != 16:
        raise ValueError(f"{path} is a {info['bitdepth']}-bit PNG, not a 16-bit one")
    channels = info["planes"]
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, channels)
    return np.ascontiguousarray(_UPRIGHT.get(orientation, lambda a: a)(pixels))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _with_metadata_chunks(png_bytes: bytes, metadata: PhotoMetadata, size: tuple[int, int]) -> bytes:
    """``png_bytes`` with iCCP and eXIf chunks inserted after IHDR (both must precede the image data)."""
    chunks = b""
    if metadata.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc_profile))
    exif = metadata.exif_for(size)
    if exif:
        chunks += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER))
    end_of_ihdr = len(PNG_SIGNATURE) + 8 + 13 + 4
    return png_bytes[:end_of_ihdr] + chunks + png_bytes[end_of_ihdr:]


def _encode_16bit_png(pixels: np.ndarray, metadata: PhotoMetadata) -> bytes:
    import png

    height, width, channels = pixels.shape
    samples = np.round(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16)
    writer = png.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4), bitdepth=16)
    buffer = io.BytesIO()
    writer.write(buffer, samples.reshape(height, width * channels))
    return _with_metadata_chunks(buffer.getvalue(), metadata, (width, height))


def _as_pil(pixels: PIL.Image.Image | np.ndarray) -> PIL.Image.Image:
    if isinstance(pixels, PIL.Image.Image):
        return pixels
    samples = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return PIL.Image.fromarray(samples[..., 0] if samples.shape[-1] == 1 else samples)


def encode_photo(
    pixels: PIL.Image.Image | np.ndarray,
    metadata: PhotoMetadata | None = None,
    format: str = "png",
    quality: int | None = None,
) -> bytes:
    """The file bytes of a restored photo: a PIL image, or float H x W x C in [0, 1] (16-bit PNG where the
    metadata says the input was 16-bit and ``pixels`` is an array)."""
    if format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {format!r}")
    if quality is not None and (format == "png" or not 1 <= int(quality) <= 100):
        raise ValueError(
            "quality is for jpeg and webp output only" if format == "png" else f"quality must be 1-100, got {quality}"
        )
    metadata = metadata or PhotoMetadata()
    if format == "png" and metadata.bit_depth == 16 and isinstance(pixels, np.ndarray):
        return _encode_16bit_png(np.asarray(pixels, dtype=np.float64), metadata)
    image = _as_pil(pixels)
    options = metadata.save_options(image.size)
    if format == "jpeg":
        if image.mode in ("RGBA", "LA"):
            raise ValueError("JPEG has no transparency: this image has an alpha channel; write png or webp")
        quality = DEFAULT_QUALITY["jpeg"] if quality is None else int(quality)
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)  # full colour detail when high
    elif format == "webp":
        options.update(quality=DEFAULT_QUALITY["webp"] if quality is None else int(quality))
    buffer = io.BytesIO()
    image.save(buffer, format=format.upper(), **options)
    return buffer.getvalue()


def save_photo(
    pixels: PIL.Image.Image | np.ndarray,
    path: str | Path,
    metadata: PhotoMetadata | None = None,
    format: str = "png",
    quality: int | None = None,
) -> None:
    """Writes `encode_photo` through a temporary name, so an interrupted run never leaves a half-written file."""
    data = encode_photo(pixels, metadata, format, quality)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
