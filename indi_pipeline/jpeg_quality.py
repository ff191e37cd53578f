"""The quality a JPEG file was saved at, read from its quantisation tables (no pixels needed).

An encoder that follows the IJG library (libjpeg, Pillow, most software and many cameras' "quality" setting) scales
the standard tables of the JPEG specification by one quality number. Comparing a file's luminance table with the
tables of every quality gives that number; a file with tables of its own (some cameras, Photoshop) gets the
nearest IJG quality and a larger mismatch.

The reference tables come from Pillow itself (an 8x8 image saved at each quality), so they match what Pillow reads
back exactly, whatever order it reports the coefficients in.

Only the last compression is visible: a photo saved at quality 20 and then again at 90 reads as 90 here, while its
pixels still carry the blocking of quality 20 (the pixel estimator of `estimation` sees that).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import PIL.Image

QUALITIES = range(1, 101)


@dataclass(frozen=True)
class JpegQuality:
    """``quality``: the IJG quality (1-100) whose luminance table is nearest the file's; ``mismatch``: the mean
    relative difference of the two tables (0 for a file written by an IJG-style encoder)."""

    quality: int
    mismatch: float

    @property
    def is_ijg(self) -> bool:
        return self.mismatch < 0.02


def ijg_tables(quality: int) -> dict:
    """The quantisation tables Pillow (an IJG encoder) writes at ``quality``, as a file saved so carries them."""
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, "JPEG", quality=int(quality))
    return PIL.Image.open(buffer).quantization


@functools.lru_cache(maxsize=1)
def _reference_luma_tables() -> np.ndarray:
    return np.asarray([list(ijg_tables(quality)[0]) for quality in QUALITIES], dtype=np.float64)


def quantization_tables(image: PIL.Image.Image) -> dict | None:
    """The JPEG quantisation tables of a PIL image read from a JPEG file, or None for any other image. They survive
    `image_io.open_image_file` (which keeps them in ``image.info``) although its upright copy is a new image."""
    tables = getattr(image, "quantization", None) or image.info.get("quantization")
    return tables or None


def ijg_quality(tables: dict) -> JpegQuality:
    """The IJG quality nearest a file's quantisation tables ({table id: 64 values}; table 0 is luminance)."""
    if 0 not in tables or len(tables[0]) != 64:
        raise ValueError("a JPEG luminance quantisation table has 64 values under table id 0")
    luma = np.asarray(list(tables[0]), dtype=np.float64)
    references = _reference_luma_tables()
    # Relative differences: the large high-frequency steps of low qualities would otherwise decide every match.
    mismatches = (np.abs(references - luma) / np.maximum(references, luma)).mean(axis=1)
    best = int(np.argmin(mismatches))
    return JpegQuality(quality=QUALITIES[best], mismatch=float(mismatches[best]))


def jpeg_quality_of(image: PIL.Image.Image) -> JpegQuality | None:
    """The IJG quality of a PIL image opened from a JPEG file; None for an image that did not come from one."""
    tables = quantization_tables(image)
    return None if tables is None else ijg_quality(tables)
