"""train/device_degradation.DeviceDegrader: the training batches' degradations, with no per-batch read from the device.

A read of a device value (a parameter drawn on the GPU and brought back, the NaN check) makes the CPU wait for the
GPU every step, and a per-batch kernel rasterisation keeps the CPU busy while the GPU idles. Here the per-batch call is run with those entry points made
to raise, so the test fails if one comes back; `train/batch_bench.py` checks the same on a real GPU with CUDA's
sync debug mode (and runs here on the CPU, below).
"""

from __future__ import annotations

import pytest
import torch

import indi_pipeline.degradations as degradations
import indi_pipeline.photo_mix as photo_mix
from train.device_degradation import MIXES, DeviceDegrader, disk_kernel_bank

DEVICE_TASKS = ("denoise", "sr4", "motion_deblur", "defocus_deblur")  # jpeg is compressed by PIL in the workers


def gray_batch(n: int = 16, size: int = 32) -> torch.Tensor:
    """Flat images: a blur leaves them unchanged (reflect padding), so degraded - clean is the noise alone."""
    return torch.linspace(0.2, 0.8, n).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()


def forbid(monkeypatch, *names):
    def refuse(name):
        def raiser(*args, **kwargs):
            raise AssertionError(f"{name} called in a training batch's degradation")

        return raiser

    for owner, attribute in names:
        monkeypatch.setattr(owner, attribute, refuse(f"{getattr(owner, '__name__', owner)}.{attribute}"))


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("task", DEVICE_TASKS)
def test_a_batch_reads_nothing_back_and_rasterises_nothing(task, mix, monkeypatch):
    degrader = DeviceDegrader(task, "cpu", seed=0, kernel_bank_size=64, mix=mix)
    clean = gray_batch()
    expected = degrader(clean)
    degrader.reseed(0)
    forbid(
        monkeypatch,
        (degradations, "_rand"),
        (degradations, "disk_kernels"),
        (degradations, "motion_kernels"),
        (photo_mix, "photo_defocus_kernels"),
        (photo_mix, "photo_motion_kernels"),
        (torch.Tensor, "item"),
        (torch.Tensor, "tolist"),
    )
    check_image = degradations._check_image

    def check_without_reading_back(x, *args, check_finite=True, **kwargs):
        assert not check_finite, "the NaN/Inf check of a training batch reads a value back from the device"
        return check_image(x, *args, check_finite=check_finite, **kwargs)

    monkeypatch.setattr(degradations, "_check_image", check_without_reading_back)
    degraded = degrader(clean)
    assert torch.equal(degraded, expected)  # and the reseeded stream repeats
    assert degraded.shape == clean.shape and degraded.dtype == clean.dtype


@pytest.mark.parametrize("task", ["motion_deblur", "defocus_deblur"])
def test_blur_noise_is_the_library_s_range(task):
    """Per-image noise std drawn uniformly in [0, 2/255] (BLUR_NOISE_MAX), as the library's own draw."""
    degrader = DeviceDegrader(task, "cpu", seed=1, kernel_bank_size=64)
    clean = gray_batch(n=64, size=48)
    std = (degrader(clean) - clean).flatten(1).std(1) * 255
    assert float(std.max()) <= 2.0 * 1.05 and float(std.max()) > 1.6 and float(std.min()) < 0.4


def test_denoise_noise_is_sigma_max():
    clean = gray_batch(n=8, size=64)
    std = (DeviceDegrader("denoise", "cpu", seed=0)(clean) - clean).flatten(1).std(1)
    assert torch.allclose(std, torch.full_like(std, degradations.DENOISE_SIGMA_MAX), rtol=0.03)


def test_disk_bank_is_the_library_s_disks_in_chunks():
    """The bank is disk_kernels over radii uniform in DEFOCUS_RADIUS_RANGE, rasterised in chunks (same result)."""
    bank = disk_kernel_bank(300, torch.Generator().manual_seed(3), torch.device("cpu"))
    low, high = degradations.DEFOCUS_RADIUS_RANGE
    radii = low + (high - low) * torch.rand(300, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(bank, degradations.disk_kernels(radii, size=13))
    # defocus_blur with given kernels is the same blur as with the radii they were drawn from
    clean = gray_batch(n=2, size=24) + torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.1
    by_radius = degradations.defocus_blur(clean, radius=radii[:2], noise_sigma=0, kernel_size=13)
    assert torch.allclose(degradations.defocus_blur(clean, kernels=bank[:2], noise_sigma=0), by_radius, atol=1e-6)


@pytest.mark.slow
def test_batch_bench_runs_every_device_task(clean_dir):
    from benchmarks import batch_bench

    result = batch_bench.main(
        [
            "--train_data_dir",
            str(clean_dir),
            "--device",
            "cpu",
            "--batches",
            "2",
            "--batch_size",
            "2",
            "--resolution",
            "64",
            "--kernel_bank_size",
            "16",
        ]
    )
    assert set(result["rows"]) == set(DEVICE_TASKS)
    for row in result["rows"].values():
        assert row["images_per_s"] > 0 and row["device_waits"] == "not checked (no CUDA device)"


def test_the_photo_mix_keeps_sigma_max_and_mixes_the_kinds():
    """Photo-mix denoise batches: every image's noise has RMS sigma_max (so t keeps its meaning), of several kinds:
    camera noise grows with brightness, white noise does not."""
    clean = gray_batch(n=64, size=32)
    noise = DeviceDegrader("denoise", "cpu", seed=0, mix="photo")(clean) - clean
    rms = noise.square().flatten(1).mean(1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, degradations.DENOISE_SIGMA_MAX), rtol=0.03)
    kinds = photo_mix.draw_choices(64, photo_mix.NOISE_SHARES, torch.Generator().manual_seed(0))
    assert set(kinds.tolist()) == {0, 1, 2}
    # the same kinds drive the batch: the white images' noise is independent across channels, the correlated not
    channel_correlation = torch.stack([torch.corrcoef(image.flatten(1))[0, 1] for image in noise])
    assert float(channel_correlation[kinds == 0].abs().max()) < 0.1
    assert float(channel_correlation[kinds == 2].mean()) > 0.2  # the random mixing makes some pairs weakly tied


@pytest.mark.parametrize("task", ["motion_deblur", "defocus_deblur"])
def test_the_photo_mix_banks_reach_milder_blur(task):
    """The photo mix's kernels include milder blur than the definition's mildest (a larger centre weight)."""
    bank = {m: DeviceDegrader(task, "cpu", seed=2, kernel_bank_size=256, mix=m).kernel_bank for m in MIXES}
    centre = {m: k[:, k.shape[1] // 2, k.shape[2] // 2] for m, k in bank.items()}
    assert float(centre["photo"].max()) > float(centre["benchmark"].max())
    assert torch.allclose(bank["photo"].sum(dim=(1, 2)), torch.ones(256), atol=1e-5)


def test_an_unknown_mix_is_refused():
    with pytest.raises(ValueError, match="unknown degradation mix 'real'"):
        DeviceDegrader("denoise", "cpu", seed=0, mix="real")
