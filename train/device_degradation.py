"""Batched degradations on the training device, built on `indi_pipeline.degradations` (never re-derived here).

Camera-shake kernels come from a bank drawn once at start-up: generating a random-walk trajectory per image costs
CPU time per batch that would starve a GPU, while sampling from a few thousand pre-drawn kernels costs nothing.
"""

from __future__ import annotations

import torch

from indi_pipeline.degradations import DENOISE_SIGMA_MAX, degrade, motion_blur, motion_kernels

MOTION_BANK_SIZE = 4096


class DeviceDegrader:
    """``degrader(clean) -> degraded`` for a task, with its own seeded generator on ``device``."""

    def __init__(self, task: str, device: torch.device, seed: int, motion_bank_size: int = MOTION_BANK_SIZE):
        self.task = task
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.kernel_bank = None
        if task == "motion_deblur":
            bank_generator = torch.Generator().manual_seed(seed)
            self.kernel_bank = motion_kernels(motion_bank_size, generator=bank_generator, device=self.device)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator if generator is not None else self.generator
        if self.kernel_bank is not None:
            index = torch.randint(len(self.kernel_bank), (clean.shape[0],), generator=generator, device=generator.device)
            return motion_blur(clean, kernels=self.kernel_bank[index.to(self.device)], generator=generator)
        return self.fixed(clean, generator)

    def fixed(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The task's degradation drawn from ``generator`` (fresh kernels; used for validation)."""
        if self.task == "denoise":
            # InDI denoising trains y = x + sigma_max * n: x_t then holds noise t * sigma_max, so one model covers
            # every sigma <= sigma_max by starting at t = sigma / sigma_max (the pipeline's strength).
            return degrade("denoise", clean, generator=generator, sigma=DENOISE_SIGMA_MAX)
        return degrade(self.task, clean, generator=generator)
