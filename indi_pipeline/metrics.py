"""Image-quality metrics on [0,1] float tensors (N,C,H,W) -> one value per image (N,).

All functions run without grad on whatever device the inputs live on; a 3-D (C,H,W)
input is treated as a batch of one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .lpips import lpips_distance

__all__ = ["psnr", "ssim", "lpips", "high_frequency_ratio"]


def _batch(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() == 3:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    if pred.dim() != 4:
        raise ValueError(f"expected (N,C,H,W) or (C,H,W), got {tuple(pred.shape)}")
    return pred.float(), target.float()


@torch.no_grad()
def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (N,), 10*log10(data_range^2 / MSE); inf where identical."""
    pred, target = _batch(pred, target)
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


@torch.no_grad()
def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (N,): gaussian window 11x11, sigma 1.5, K=(0.01, 0.03) (torchmetrics)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = _batch(pred, target)
    return structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, kernel_size=11, sigma=1.5, data_range=data_range, reduction="none"
    )


lpips = lpips_distance  # LPIPS-alex v0.1 per image (N,) on [0,1] inputs; see indi_pipeline.lpips


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = _LAPLACIAN.to(x.device, x.dtype).expand(c, 1, 3, 3)
    return F.conv2d(x, k, groups=c).pow(2).flatten(1).mean(1)  # valid conv: no border artefacts


@torch.no_grad()
def high_frequency_ratio(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Sharpness per image (N,): Laplacian energy of pred / that of target (1.0 = as detailed as the truth, <1 = blurrier)."""
    pred, target = _batch(pred, target)
    return _laplacian_energy(pred) / _laplacian_energy(target).clamp_min(eps)
