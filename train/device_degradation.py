"""Batched degradations on the training device, built on `indi_pipeline.degradations` (never re-derived here).

A training step must not make the CPU wait for the GPU: every read of a device value (a parameter drawn on the GPU
and brought back, the library's NaN check) drains the GPU's queue, and the GPU then idles while the CPU prepares the
next kernels. So per batch this module only launches device work:
- blur kernels come from banks drawn once at start-up (camera shake and disks). Rasterising per batch costs CPU
  time that would starve a GPU: a random-walk trajectory per image, or about 35 ms for 64 supersampled disks;
- per-image parameters (noise levels) are drawn on the CPU and reach the device with a non-blocking copy, and the
  noise itself on the device;
- the NaN check is off: the batches are crops of decoded 8-bit photos, finite by construction.
"""

from __future__ import annotations

import math

import torch

from indi_pipeline.degradations import (
    BLUR_NOISE_MAX,
    DEFOCUS_RADIUS_RANGE,
    DENOISE_SIGMA_MAX,
    defocus_blur,
    degrade,
    disk_kernels,
    motion_blur,
    motion_kernels,
)
from indi_pipeline.photo_mix import NOISE_SHARES, draw_choices, photo_defocus_kernels, photo_motion_kernels, photo_noise

KERNEL_BANK_SIZE = 4096
_DISK_CHUNK = 256  # disks rasterised per call when drawing the bank (bounds the supersampling tensor to ~90 MB)


def disk_kernel_bank(size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``size`` defocus kernels with radii uniform in DEFOCUS_RADIUS_RANGE, as ``defocus_blur`` draws them."""
    low, high = DEFOCUS_RADIUS_RANGE
    radii = low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)
    kernel_size = 2 * math.ceil(high) + 1  # defocus_blur's default for drawn radii: 13 for radii up to 6
    return torch.cat([disk_kernels(chunk, size=kernel_size) for chunk in radii.split(_DISK_CHUNK)]).to(device)


MIXES = ("benchmark", "photo")  # the task's definition, or indi_pipeline.photo_mix's wider one


class DeviceDegrader:
    """``degrader(clean) -> degraded`` for a task, with its own seeded generators (device: noise; CPU: parameters).

    ``mix``: "benchmark" degrades as the task's definition does (design.md section 4), "photo" as
    ``indi_pipeline.photo_mix`` does (JPEG is not done here: it runs in the DataLoader workers)."""

    def __init__(
        self,
        task: str,
        device: torch.device,
        seed: int,
        kernel_bank_size: int = KERNEL_BANK_SIZE,
        mix: str = "benchmark",
    ):
        if mix not in MIXES:
            raise ValueError(f"unknown degradation mix {mix!r}; valid: {', '.join(MIXES)}")
        self.task = task
        self.mix = mix
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.parameter_generator = torch.Generator()
        self.reseed(seed)
        self.blur, self.kernel_bank = None, None
        bank_generator = torch.Generator().manual_seed(seed)
        if task == "motion_deblur":
            self.blur = motion_blur
            if mix == "photo":
                self.kernel_bank = photo_motion_kernels(kernel_bank_size, bank_generator, device=self.device)
            else:
                self.kernel_bank = motion_kernels(kernel_bank_size, generator=bank_generator, device=self.device)
        elif task == "defocus_deblur":
            self.blur = defocus_blur
            if mix == "photo":
                self.kernel_bank = photo_defocus_kernels(kernel_bank_size, bank_generator).to(self.device)
            else:
                self.kernel_bank = disk_kernel_bank(kernel_bank_size, bank_generator, self.device)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self.parameter_generator.manual_seed(seed)

    def __call__(self, clean: torch.Tensor) -> torch.Tensor:
        if self.task == "denoise" and self.mix == "photo":
            kinds = draw_choices(clean.shape[0], NOISE_SHARES, self.parameter_generator)  # on the CPU: no read-back
            return photo_noise(clean, DENOISE_SIGMA_MAX, generator=self.generator, choices=kinds)
        if self.kernel_bank is None:
            return self.fixed(clean, self.generator, check_finite=False)
        n = clean.shape[0]
        index = torch.randint(len(self.kernel_bank), (n,), generator=self.generator, device=self.device)
        # uniform in [0, BLUR_NOISE_MAX], the library's default draw, but on the CPU (no device read-back)
        noise_sigma = BLUR_NOISE_MAX * torch.rand(n, generator=self.parameter_generator, dtype=torch.float64)
        return self.blur(
            clean,
            kernels=self.kernel_bank[index],
            noise_sigma=noise_sigma,
            generator=self.generator,
            check_finite=False,
        )

    def fixed(self, clean: torch.Tensor, generator: torch.Generator, check_finite: bool = True) -> torch.Tensor:
        """The task's definition drawn from ``generator`` (fresh kernels; validation scores on it, whatever the mix)."""
        if self.task == "denoise":
            # InDI denoising trains y = x + sigma_max * n: x_t then holds noise t * sigma_max, so one model covers
            # every sigma <= sigma_max by starting at t = sigma / sigma_max (the pipeline's strength).
            return degrade("denoise", clean, generator=generator, sigma=DENOISE_SIGMA_MAX, check_finite=check_finite)
        return degrade(self.task, clean, generator=generator, check_finite=check_finite)
