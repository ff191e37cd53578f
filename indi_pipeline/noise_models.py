"""Noise as cameras and the web make it, beside the white Gaussian noise of the denoise task's definition.

Each function returns ``x`` plus noise whose RMS (over pixels and channels, per image) is exactly ``rms``, so a
training target or a benchmark's "true t" can be read off as ``rms / sigma_max`` whatever the noise's shape:

* ``camera_noise``: shot + read noise in linear light (variance a*L + b per channel, with per-channel gains as a
  sensor's white balance gives), back through the sRGB curve: dark areas get less noise than bright ones in linear
  terms, more in sRGB terms;
* ``correlated_noise``: white noise mixed across the colour channels (as demosaicking does) and blurred a little in
  space (as denoising in a camera pipeline and resampling do);
* ``jpeg_after``: a JPEG round trip at a given quality after any of these (what a phone or a website does next).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .degradations import _gen_device, jpeg_compress


def _rms_scaled(x: torch.Tensor, noise: torch.Tensor, rms: torch.Tensor) -> torch.Tensor:
    current = noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return x + noise * (rms.to(x.device).view(-1, 1, 1, 1) / current)


def _as_rms(rms, n: int) -> torch.Tensor:
    rms = torch.as_tensor(rms, dtype=torch.float32).flatten()
    return rms.expand(n) if rms.numel() == 1 else rms


def _draw(draw, shape, generator, like: torch.Tensor) -> torch.Tensor:
    """``draw`` (torch.rand / torch.randn) on the generator's device, then on ``like``'s: the same numbers for a seed
    wherever ``x`` lives, and usable with a training device's generator."""
    return draw(shape, generator=generator, device=_gen_device(generator)).to(like.device)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def camera_noise(x: torch.Tensor, rms, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot + read noise in linear light (random shot/read balance and channel gains per image), RMS ``rms`` in sRGB."""
    n = x.shape[0]
    u = _draw(torch.rand, (n, 5), generator, x)
    shot = 10 ** (-3 + 1.5 * u[:, :1])  # variance per unit of linear signal
    read = 10 ** (-6 + 2 * u[:, 1:2])  # signal-independent variance
    gains = 0.7 + 0.6 * u[:, 2:5]  # per-channel gains (white balance)
    linear = srgb_to_linear(x)
    variance = (shot * gains).view(n, 3, 1, 1) * linear + read.view(n, 1, 1, 1)
    noisy_linear = linear + variance.sqrt() * _draw(torch.randn, x.shape, generator, x)
    noise = linear_to_srgb(noisy_linear.clamp_min(0)) - x.clamp(0, 1)
    return _rms_scaled(x, noise, _as_rms(rms, n))


def correlated_noise(x: torch.Tensor, rms, generator: torch.Generator | None = None) -> torch.Tensor:
    """White noise mixed across channels by a random 3x3 matrix and blurred by a Gaussian of 0.3-1 px, RMS ``rms``."""
    n = x.shape[0]
    white = _draw(torch.randn, x.shape, generator, x)
    mixing = torch.eye(3, device=x.device) + 0.6 * _draw(torch.rand, (n, 3, 3), generator, x)
    noise = torch.einsum("nij,njhw->nihw", mixing, white)
    out = []
    for image, sigma in zip(noise, 0.3 + 0.7 * _draw(torch.rand, (n,), generator, x).cpu()):
        radius = 3
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
        kernel = torch.exp(-(taps**2) / (2 * float(sigma) ** 2))
        kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        image = F.conv2d(F.pad(image[None], (radius, radius, 0, 0), mode="reflect"), kernel, groups=3)
        image = F.conv2d(F.pad(image, (0, 0, radius, radius), mode="reflect"), kernel.transpose(2, 3), groups=3)
        out.append(image)
    return _rms_scaled(x, torch.cat(out), _as_rms(rms, n))


def jpeg_after(x: torch.Tensor, quality) -> torch.Tensor:
    """A JPEG round trip (PIL, 4:2:0) at ``quality`` of an image that may already hold noise (clipped to [0, 1])."""
    return jpeg_compress(x.clamp(0, 1), quality=quality)
