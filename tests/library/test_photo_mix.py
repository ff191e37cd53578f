"""indi_pipeline.photo_mix: the training mixes that widen each task's definition toward real photos."""

import numpy as np
import pytest
import torch

import indi_pipeline.photo_mix as photo_mix
from indi_pipeline.degradations import DEGRADATIONS, DENOISE_SIGMA_MAX, defocus_blur, degrade_sr4, disk_kernels
from indi_pipeline.photo_mix import (
    NOISE_SHARES,
    PHOTO_MIXES,
    draw_choices,
    gaussian_kernels,
    photo_defocus,
    photo_defocus_kernels,
    photo_jpeg,
    photo_motion_kernels,
    photo_noise,
)


def photos(n: int = 4, size: int = 32) -> torch.Tensor:
    """Smooth colour images with a bright and a dark half (camera noise differs between them)."""
    ramp = torch.linspace(0.05, 0.95, size)
    x = ramp.view(1, 1, 1, size).expand(n, 3, size, size).clone()
    x[:, 1] = x[:, 1].flip(-1)
    return x


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_task_has_a_mix_of_the_definition_s_shape_and_sr4_is_the_definition():
    assert set(PHOTO_MIXES) == set(DEGRADATIONS)
    x = photos()
    for task, mix in PHOTO_MIXES.items():
        y = mix(x, generator=generator(0))
        assert y.shape == x.shape and y.dtype == x.dtype, task
        assert torch.equal(y, mix(x, generator=generator(0))), f"{task}: the same seed gives the same images"
    assert torch.equal(PHOTO_MIXES["sr4"](x, generator=generator(0)), degrade_sr4(x))


def test_draw_choices_follows_the_shares_and_refuses_shares_that_do_not_sum_to_one():
    counts = torch.bincount(draw_choices(20000, NOISE_SHARES, generator(1)), minlength=3) / 20000
    assert torch.allclose(counts, torch.tensor(NOISE_SHARES, dtype=counts.dtype), atol=0.015)
    with pytest.raises(ValueError, match="sum to 1"):
        draw_choices(4, (0.5, 0.3))


def test_photo_noise_has_rms_sigma_max_of_each_kind_and_camera_noise_follows_brightness():
    x = photos(n=6, size=64)
    kinds = torch.tensor([0, 1, 2, 0, 1, 2])
    noise = photo_noise(x, generator=generator(2), choices=kinds) - x
    rms = noise.square().flatten(1).mean(1).sqrt()
    assert torch.allclose(rms[kinds != 0], torch.full((4,), DENOISE_SIGMA_MAX), rtol=1e-4)  # scaled exactly
    assert torch.allclose(rms[kinds == 0], torch.full((2,), DENOISE_SIGMA_MAX), rtol=0.03)  # white: in expectation

    # red is dark on the left, green on the right: camera noise (shot noise in linear light) differs, white does not
    def red_left_over_right(image):
        return float(image[0, :, :32].std() / image[0, :, 32:].std())

    assert abs(red_left_over_right(noise[0]) - 1) < 0.15
    assert abs(red_left_over_right(noise[1]) - 1) > 0.15


def test_photo_jpeg_draws_qualities_chroma_and_second_saves_in_their_ranges(monkeypatch):
    calls = []
    real = photo_mix.jpeg_compress

    def recording(x, quality, subsampling):
        calls.append((len(x), torch.as_tensor(quality).flatten(), torch.as_tensor(subsampling).flatten()))
        return real(x, quality=quality, subsampling=subsampling)

    monkeypatch.setattr(photo_mix, "jpeg_compress", recording)
    x = torch.rand(400, 3, 8, 8, generator=generator(3))
    y = photo_jpeg(x, generator=generator(4))
    assert torch.equal((y * 255).round(), y * 255)  # decoded 8-bit images
    (n_twice, first, first_chroma), (n, quality, chroma) = calls
    assert n == 400 and 0.18 < n_twice / 400 < 0.32
    assert int(first.min()) >= 50 and int(first.max()) <= 95 and set(first_chroma.tolist()) == {2}
    assert int(quality.min()) == 10 and int(quality.max()) == 90  # every integer of 10-90 reachable, both ends
    assert float((quality > 50).float().mean()) > 0.4  # beyond the definition's 10-50
    assert 0.4 < float((chroma == 0).float().mean()) < 0.6 and set(chroma.tolist()) == {0, 2}


def test_gaussian_kernels_are_normalised_with_the_asked_spread():
    k = gaussian_kernels([1.0, 1.5], 13).double()
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(2, dtype=k.dtype))
    taps = torch.arange(13, dtype=torch.float64) - 6
    variance = (k.sum(dim=1) * taps**2).sum(dim=1)
    assert torch.allclose(variance, torch.tensor([1.0, 2.25], dtype=k.dtype), rtol=0.01)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_kernels([0.0], 13)


def test_photo_defocus_reaches_milder_blur_and_gaussians_and_blurs_as_the_definition():
    kernels = photo_defocus_kernels(2000, generator(5))
    assert kernels.shape == (2000, 13, 13) and bool((kernels >= 0).all())
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(2000), atol=1e-5)
    mildest_disk = float(disk_kernels(1.0, size=13)[0, 6, 6])
    assert float((kernels[:, 6, 6] > mildest_disk).float().mean()) > 0.05  # milder than the definition allows
    # a disk is flat in its middle; a Gaussian falls off from the centre
    falls_off = kernels[:, 6, 6] > kernels[:, 6, 7] * 1.001
    flat_wide = (kernels[:, 6, 6] - kernels[:, 6, 7]).abs() < 1e-7
    assert 0.2 < float((falls_off & ~(kernels[:, 6, 6] > mildest_disk)).float().mean()) < 0.4
    assert float(flat_wide.float().mean()) > 0.5
    x = photos()
    bank = kernels[:4]
    assert torch.equal(
        photo_defocus(x, generator=generator(6), kernels=bank), defocus_blur(x, kernels=bank, generator=generator(6))
    )


def test_photo_motion_kernels_include_milder_shake():
    kernels = photo_motion_kernels(64, generator(7))
    support = [(k > 1e-4).nonzero().double() for k in kernels]
    extent = np.array([float(torch.cdist(s, s).max()) for s in support])
    assert kernels.shape == (64, 33, 33) and extent.min() < 5.0 and extent.max() > 10.0
