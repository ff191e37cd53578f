"""Training mixes closer to the photos people bring, beside the benchmark definitions of ``degradations``.

The task definitions of design.md section 4 (``degradations.DEGRADATIONS``) stay the evaluation settings, so scores
stay comparable with the model cards. A model trained on a mix is scored on those definitions, and on the milder and
other kinds of the blind benchmark. ``PHOTO_MIXES[task](x, generator=None)`` widens each definition:

==================  ==============================================================================================
task id             photo mix
==================  ==============================================================================================
``denoise``         noise of RMS ``sigma_max`` per image, of one of three kinds: white Gaussian (the definition),
                    camera (shot + read noise in linear light) or correlated (across channels, a little in space)
``jpeg``            quality 10-90 (the definition: 10-50), 4:2:0 or 4:4:4 chroma, a share compressed twice
``defocus_deblur``  disks from radius 0.5 px (the definition: from 1 px), and a share of Gaussian blurs
``motion_deblur``   camera shake from 3 px (the definition: from 5 px)
``sr4``             the definition (bicubic): the benchmark's convention, and what the pipeline's input is
==================  ==============================================================================================

What each task's t means stays put. Denoise noise keeps RMS ``sigma_max`` whatever its kind, so x_t holds noise of
RMS ``t * sigma_max`` and the pipeline's strength and the start estimators read as before. Noise followed by JPEG
is not in the denoise mix: the JPEG would change the noise's RMS, and so what a start means.

Randomness comes from ``generator`` (parameters drawn on its device, as in ``degradations``); ``choices`` (per-image
kind indices, on the CPU) lets a training loop draw the kinds without reading a value back from its device.
"""

from __future__ import annotations

import math

import torch

from .degradations import (  # the draws of the definitions, so a mix draws its parameters as they do
    BLUR_NOISE_MAX,
    DENOISE_SIGMA_MAX,
    _gen_device,
    _rand,
    _uniform,
    defocus_blur,
    degrade_sr4,
    disk_kernels,
    jpeg_compress,
    motion_blur,
    motion_kernels,
)
from .noise_models import camera_noise, correlated_noise

__all__ = [
    "PHOTO_MIXES",
    "NOISE_KINDS",
    "photo_noise",
    "photo_jpeg",
    "photo_defocus_kernels",
    "photo_defocus",
    "photo_motion_kernels",
    "photo_motion",
    "gaussian_kernels",
    "draw_choices",
]

# denoise: each kind's share of the images (white Gaussian first: the task's definition)
NOISE_KINDS = ("white", "camera", "correlated")
NOISE_SHARES = (0.5, 0.3, 0.2)
# jpeg: phones and websites save at 70-95, forums and re-uploads lower; many cameras and editors save 4:4:4
PHOTO_JPEG_QUALITY_RANGE = (10, 90)
PHOTO_JPEG_444_SHARE = 0.5
PHOTO_JPEG_DOUBLE_SHARE = 0.25
PHOTO_JPEG_FIRST_QUALITY_RANGE = (50, 95)  # the first save of a twice-compressed image
# defocus: disks down to a near-identity, and Gaussian blurs (lens softness, resampling)
PHOTO_DEFOCUS_RADIUS_RANGE = (0.5, 6.0)
PHOTO_DEFOCUS_GAUSSIAN_SHARE = 0.3
PHOTO_DEFOCUS_GAUSSIAN_SIGMA_RANGE = (0.4, 2.5)
PHOTO_DEFOCUS_KERNEL_SIZE = 13  # the definition's size for disks up to 6 px
# motion: milder shake than the definition's 5 px
PHOTO_MOTION_LENGTH_RANGE = (3.0, 25.0)


def _integers(n: int, bounds: tuple[int, int], generator) -> torch.Tensor:
    """(n,) integers uniform in ``bounds`` (both included), as float64 on the CPU."""
    low, high = bounds
    return _uniform(n, (low, high + 1), generator).floor().clamp(max=high)


def draw_choices(n: int, shares, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) int64 CPU: per image the index of a kind, with probabilities ``shares`` (they sum to 1)."""
    edges = torch.tensor(shares, dtype=torch.float64).cumsum(0)
    if not math.isclose(float(edges[-1]), 1.0, abs_tol=1e-9):
        raise ValueError(f"shares must sum to 1, got {list(shares)}")
    return torch.bucketize(_rand(n, generator), edges[:-1], right=True)


def photo_noise(
    x: torch.Tensor,
    rms: float = DENOISE_SIGMA_MAX,
    generator: torch.Generator | None = None,
    choices: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x`` plus noise of RMS ``rms`` per image, each of a kind in ``NOISE_KINDS`` (``choices``, else drawn with
    ``NOISE_SHARES``). White noise is the denoise definition's (``randn * rms``), so its RMS is ``rms`` in
    expectation; the camera and correlated kinds are scaled to exactly ``rms``."""
    n = x.shape[0]
    kinds = draw_choices(n, NOISE_SHARES, generator) if choices is None else choices.cpu()
    y = x + rms * torch.randn(x.shape, generator=generator, device=_gen_device(generator), dtype=torch.float32).to(x)
    for index, add_noise in ((1, camera_noise), (2, correlated_noise)):
        chosen = (kinds == index).nonzero().flatten()
        if len(chosen):
            y[chosen.to(x.device)] = add_noise(x[chosen.to(x.device)], rms, generator=generator).to(x.dtype)
    return y


def photo_jpeg(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG round trips at quality ``PHOTO_JPEG_QUALITY_RANGE``, 4:4:4 for a share of the images (else 4:2:0), and
    a share saved once before (at ``PHOTO_JPEG_FIRST_QUALITY_RANGE``, 4:2:0)."""
    n = x.shape[0]
    quality = _integers(n, PHOTO_JPEG_QUALITY_RANGE, generator)
    chroma = torch.where(_rand(n, generator) < PHOTO_JPEG_444_SHARE, 0, 2)
    twice = (_rand(n, generator) < PHOTO_JPEG_DOUBLE_SHARE).nonzero().flatten()
    first = _integers(n, PHOTO_JPEG_FIRST_QUALITY_RANGE, generator)
    if len(twice):
        x = x.clone()
        x[twice.to(x.device)] = jpeg_compress(x[twice.to(x.device)], quality=first[twice], subsampling=2)
    return jpeg_compress(x, quality=quality, subsampling=chroma)


def gaussian_kernels(sigma, size: int) -> torch.Tensor:
    """(n, size, size) float32 normalised isotropic Gaussian kernels of std ``sigma`` (px, one per kernel)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1)
    if bool((sigma <= 0).any()) or size % 2 == 0:
        raise ValueError(f"sigma must be > 0 and size odd, got sigma {sigma.flatten().tolist()}, size {size}")
    taps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    d2 = taps.view(1, -1, 1) ** 2 + taps.view(1, 1, -1) ** 2
    k = torch.exp(-d2 / (2 * sigma**2))
    return (k / k.sum(dim=(1, 2), keepdim=True)).float()


def photo_defocus_kernels(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 13, 13) defocus kernels of the photo mix: disks of radius ``PHOTO_DEFOCUS_RADIUS_RANGE`` and, for a share,
    Gaussians of std ``PHOTO_DEFOCUS_GAUSSIAN_SIGMA_RANGE``."""
    radius = _uniform(n, PHOTO_DEFOCUS_RADIUS_RANGE, generator)
    sigma = _uniform(n, PHOTO_DEFOCUS_GAUSSIAN_SIGMA_RANGE, generator)
    gaussian = _rand(n, generator) < PHOTO_DEFOCUS_GAUSSIAN_SHARE
    kernels = disk_kernels(radius, size=PHOTO_DEFOCUS_KERNEL_SIZE)
    if bool(gaussian.any()):
        kernels[gaussian] = gaussian_kernels(sigma[gaussian], PHOTO_DEFOCUS_KERNEL_SIZE)
    return kernels


def photo_motion_kernels(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(n, 33, 33) camera-shake kernels of extent ``PHOTO_MOTION_LENGTH_RANGE``: the definition's walk, milder too."""
    return motion_kernels(n, size=33, length_range=PHOTO_MOTION_LENGTH_RANGE, generator=generator, device=device)


def _photo_blur(blur, draw_kernels):
    """A blur task of the photo mix: the definition's blur + noise (``blur``), with kernels from ``draw_kernels``
    unless given (e.g. from a bank)."""

    def degrade(x, generator=None, kernels=None, noise_sigma=None, check_finite: bool = True):
        if kernels is None:
            kernels = draw_kernels(x.shape[0], generator).to(x.device)
        return blur(
            x, kernels=kernels, noise_sigma=noise_sigma, noise_max=BLUR_NOISE_MAX, generator=generator,
            check_finite=check_finite,
        )  # fmt: skip

    degrade.__name__ = f"photo_{blur.__name__.split('_')[0]}"
    return degrade


photo_defocus = _photo_blur(defocus_blur, photo_defocus_kernels)
photo_motion = _photo_blur(motion_blur, photo_motion_kernels)


def _photo_noise_task(x, generator=None, check_finite: bool = True):
    return photo_noise(x, generator=generator)


def _photo_jpeg_task(x, generator=None, check_finite: bool = True):
    return photo_jpeg(x, generator=generator)


PHOTO_MIXES = {
    "denoise": _photo_noise_task,
    "sr4": degrade_sr4,
    "jpeg": _photo_jpeg_task,
    "motion_deblur": photo_motion,
    "defocus_deblur": photo_defocus,
}
