import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from indi_pipeline import metrics
from indi_pipeline.lpips import LPIPS

DATA = Path(__file__).resolve().parents[1] / "data" / "lpips_ref"
# LPIPS-alex v0.1 reference values (design.md section 5; pyiqa ResultsCalibra, see SOURCE.md)
LPIPS_REF = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0520, "I19": 0.4253}


def _load(path: Path) -> torch.Tensor:
    arr = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def _blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    r = int(3 * sigma)
    g = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return _load(DATA / "I04_ref.png")[:, :128, :128].unsqueeze(0).contiguous()


def test_lpips_reference_values():
    names = list(LPIPS_REF)
    dist = torch.stack([_load(DATA / f"{n}_dist.png") for n in names])
    ref = torch.stack([_load(DATA / f"{n}_ref.png") for n in names])
    got = metrics.lpips(dist, ref)
    assert got.shape == (len(names),)
    for n, v in zip(names, got.tolist()):
        assert abs(v - LPIPS_REF[n]) < 1e-3, f"{n}: {v:.4f} != {LPIPS_REF[n]}"


def test_lpips_identity_and_module(image):
    assert metrics.lpips(image, image).abs().max().item() < 1e-6
    net = LPIPS()
    assert not any(p.requires_grad for p in net.parameters())
    noisy = (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        assert net(noisy, image).item() > 0.01
    assert torch.allclose(metrics.lpips(noisy[0], image[0]), net(noisy, image).detach(), atol=1e-6)


def test_psnr_known_mse(image):
    x = torch.stack([image[0], image[0]])
    noise = torch.full_like(x, 0.1)
    noise[1] *= -1  # MSE 0.01 -> 20 dB for each image
    y = x + noise
    np.testing.assert_allclose(metrics.psnr(y, x).numpy(), [20.0, 20.0], atol=1e-4)
    np.testing.assert_allclose(metrics.psnr(255 * y, 255 * x, data_range=255.0).numpy(), [20.0, 20.0], atol=1e-4)
    assert math.isinf(metrics.psnr(x, x)[0].item())


def test_ssim(image):
    x = torch.cat([image, image.flip(-1)])
    np.testing.assert_allclose(metrics.ssim(x, x).numpy(), [1.0, 1.0], atol=1e-5)
    s = metrics.ssim(_blur(x), x)
    assert s.shape == (2,) and (s < 0.99).all()


def test_high_frequency_ratio(image):
    assert metrics.high_frequency_ratio(image, image).item() == pytest.approx(1.0, abs=1e-6)
    r = metrics.high_frequency_ratio(_blur(image), image)
    assert r.shape == (1,) and r.item() < 0.5
    noisy = (image + 0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert metrics.high_frequency_ratio(noisy, image).item() > 1.0
