"""How far along its task's InDI path does an image sit? A small network that answers with t (0 = nothing to restore).

Every training sample of InDI is labelled with its t: x_t = (1 - t) x + t y. The same samples teach a small CNN to
read t off an image, so the walk can start where the image is (``strength="auto"``) instead of at t = 1, which treats
every photo as maximally degraded and wipes texture off mildly degraded ones.

The network reads a t-logit per crop from the log-energies of its features; an image's estimate pools crops spread
over it: the median over crops of each crop's t (robust to a few flat or saturated regions). It runs on
at most ``max_crops`` crops of ``crop`` px, so its cost does not grow with the photo: milliseconds per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .safe_loading import SafetensorsOnlyLoading

MIN_SIDE = 32  # below this an image holds too little texture for an estimate


class InDIStartEstimator(SafetensorsOnlyLoading, ModelMixin, ConfigMixin):
    """t-logits per location of an image in [0, 1]; `estimate` pools them into one t per image.

    Args:
        width: channels of the first layer (doubled at each of the strided layers).
        task: the task whose path it was trained on (informational; the pipeline checks it).
        crop: side of the crops an estimate pools.
        max_crops: most crops per image (a grid over the image).
        nothing_below: an estimate below this means "nothing to restore" (calibrated on held-out clean photos).
    """

    @register_to_config
    def __init__(
        self,
        width: int = 16,
        task: str | None = None,
        crop: int = 128,
        max_crops: int = 16,
        nothing_below: float = 0.05,
    ):
        super().__init__()
        w = int(width)
        # The image and its high-pass residual (noise, blocking and lost detail live at the pixel scale), a few
        # convolutions, then the log of each feature's mean energy over the crop: noise levels and blur widths act
        # multiplicatively on energies, so their logs are what a small head can read linearly. Learned end to end
        # from the image alone, the same layers did not learn (the content's energy swamps the degradation's).
        self.features = nn.Sequential(
            nn.Conv2d(6, w, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
        )
        self.head = nn.Sequential(nn.Linear(2 * w, 32), nn.GELU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The t-logit of each crop of (N, 3, H, W) in [0, 1]."""
        high_pass = x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        features = self.features(torch.cat([x - 0.5, 8 * high_pass], dim=1)).float()
        return self.head(torch.log(features.pow(2).mean(dim=(2, 3)) + 1e-8)).squeeze(1)

    @torch.no_grad()
    def estimate(self, images: torch.Tensor) -> torch.Tensor:
        """One t in [0, 1] per image of (N, 3, H, W) in [0, 1]: the median over crops of each crop's estimate."""
        check_estimator_input(images)
        parameter = next(self.parameters())
        crops = [grid_crops(image, self.config.crop, self.config.max_crops) for image in images]
        counts = [len(c) for c in crops]
        logits = self(torch.cat(crops).to(device=parameter.device, dtype=parameter.dtype)).float().cpu()
        per_crop = torch.sigmoid(logits).split(counts)
        return torch.stack([values.median() for values in per_crop])


def check_estimator_input(images: torch.Tensor) -> None:
    """ValueError naming what is wrong with an estimator's input (shape, size, non-finite values)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"the estimator takes (N, 3, H, W) RGB tensors, got {shape}")
    if min(images.shape[-2:]) < MIN_SIDE:
        raise ValueError(
            f"an image of {images.shape[-1]}x{images.shape[-2]} px is too small to estimate its degradation "
            f"(at least {MIN_SIDE} px a side); pass a number as strength instead"
        )
    if not torch.isfinite(images).all():
        raise ValueError("the image holds NaN or infinite values: its degradation cannot be estimated")


def grid_crops(image: torch.Tensor, crop: int, max_crops: int) -> torch.Tensor:
    """Up to ``max_crops`` crops of ``crop`` px (fewer and smaller for a small image) on an even grid over ``image``."""
    height, width = image.shape[-2:]
    size_h, size_w = min(crop, height), min(crop, width)
    rows = max(1, min(int(max_crops**0.5), height // size_h))
    cols = max(1, min(max_crops // rows, width // size_w))
    tops = torch.linspace(0, height - size_h, rows).round().long().tolist()
    lefts = torch.linspace(0, width - size_w, cols).round().long().tolist()
    return torch.stack([image[:, top : top + size_h, left : left + size_w] for top in tops for left in lefts])


def estimator_loss(estimator: InDIStartEstimator, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Training loss: L1 between the sigmoid of each crop's mean logit and its true t."""
    return F.l1_loss(torch.sigmoid(estimator(x_t)), t)
