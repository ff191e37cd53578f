"""How far along its task's InDI path does an image sit? A small network that answers with t (0 = nothing to restore).

Every training sample of InDI is labelled with its t: x_t = (1 - t) x + t y. The same samples teach a small CNN to
read t off an image, so the walk can start where the image is (``strength="auto"``) instead of at t = 1, which treats
every photo as maximally degraded and wipes texture off mildly degraded ones.

The network reads a t-logit per crop from the log-energies of its features; an image's estimate pools crops spread
over it: a quantile over crops of each crop's t (robust to a few flat, saturated or textured regions). It runs on
at most ``max_crops`` crops of ``crop`` px, so its cost does not grow with the photo: milliseconds per image.
"""

from __future__ import annotations

import numpy as np
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
        start_curve: knots ``[[estimate, start], ...]`` mapping an estimate to the start t that restores best at 1
            step, measured on held-out photos (a model that over-smooths does best started below the true t);
            None starts at the estimate itself.
        quality_curve: knots ``[[jpeg quality, start], ...]``: the best start for a JPEG file saved at that IJG
            quality (read from its quantisation tables, `jpeg_quality`); None ignores the tables.
        pool_quantile: the quantile of the crops' estimates that is the image's (0.5: the median). Below the
            median, flat crops decide, where noise cannot pass for texture (denoising); JPEG blocking shows in
            textured crops too, so its median reads better.
        scales: how many octaves the features are read at (the image, then halved each time). Blur moves energy
            from the fine octaves to the coarse ones, so its estimate needs several; noise lives at the finest.
    """

    @register_to_config
    def __init__(
        self,
        width: int = 16,
        task: str | None = None,
        crop: int = 128,
        max_crops: int = 16,
        nothing_below: float = 0.05,
        scales: int = 1,
        pool_quantile: float = 0.5,
        start_curve: list | None = None,
        quality_curve: list | None = None,
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
        # The same layers at every octave, so that the head compares like with like: the differences of log-energies
        # between octaves say how much fine detail is missing whatever the content's contrast.
        self.head = nn.Sequential(nn.Linear(2 * w * int(scales), 32), nn.GELU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The t-logit of each crop of (N, 3, H, W) in [0, 1]."""
        log_energies = []
        for octave in range(int(self.config.scales)):
            if octave:
                x = F.avg_pool2d(x, 2)
            high_pass = x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
            features = self.features(torch.cat([x - 0.5, 8 * high_pass], dim=1)).float()
            log_energies.append(torch.log(features.pow(2).mean(dim=(2, 3)) + 1e-8))
        head_dtype = self.head[0].weight.dtype  # energies are summed in fp32; an fp16 head (torch_dtype) reads them
        return self.head(torch.cat(log_energies, dim=1).to(head_dtype)).squeeze(1)

    @torch.no_grad()
    def estimate(self, images: torch.Tensor) -> torch.Tensor:
        """One t in [0, 1] per image of (N, 3, H, W) in [0, 1]: a quantile (``pool_quantile``, the median by
        default) over crops of each crop's estimate."""
        check_estimator_input(images)
        parameter = next(self.parameters())
        crops = [grid_crops(image, self.config.crop, self.config.max_crops) for image in images]
        counts = [len(c) for c in crops]
        logits = self(torch.cat(crops).to(device=parameter.device, dtype=parameter.dtype)).float().cpu()
        per_crop = torch.sigmoid(logits).split(counts)
        quantile = float(self.config.pool_quantile)
        return torch.stack([values.quantile(quantile) for values in per_crop])

    def start_for(self, estimate: float) -> float:
        """The start t for an image whose estimate is ``estimate``: 0 (nothing to restore) below ``nothing_below``,
        else the start curve's value there (the estimate itself without a curve)."""
        if estimate < float(self.config.nothing_below):
            return 0.0
        curve = self.config.start_curve
        start = estimate if not curve else interpolate(curve, estimate)
        return float(min(1.0, max(0.0, start)))

    def start_for_image(self, estimate: float, jpeg_quality: int | None = None) -> float:
        """An image's start t from its pixel estimate and, for a JPEG file where there is a quality curve, its
        tables. The larger wins: the tables see only the last save (a lower bound on the damage), the pixels also
        see the blocking of an earlier, worse one (docs/blind.md measures both)."""
        pixels = self.start_for(estimate)
        tables = None if jpeg_quality is None else self.start_for_quality(jpeg_quality)
        return pixels if tables is None else max(pixels, tables)

    def start_for_quality(self, quality: int) -> float | None:
        """The start t for a JPEG file saved at IJG ``quality``; None without a quality curve."""
        curve = self.config.quality_curve
        return None if not curve else float(min(1.0, max(0.0, interpolate(curve, quality))))


def interpolate(knots: list, value: float) -> float:
    """Piecewise-linear through ``[[x, y], ...]`` (x increasing), constant beyond the ends."""
    xs, ys = zip(*sorted((float(x), float(y)) for x, y in knots))
    return float(np.interp(value, xs, ys))


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
