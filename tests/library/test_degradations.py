"""The five task degradations (design.md section 4): statistics, PIL parity, seeding, registry, input checks."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from indi_pipeline.degradations import (
    DEGRADATIONS,
    TASK_IDS,
    add_gaussian_noise,
    bicubic_downsample,
    bicubic_upsample,
    blur,
    crop_to_multiple,
    defocus_blur,
    degradation_generator,
    degrade,
    degrade_pil,
    degrade_sr4,
    disk_kernels,
    jpeg_compress,
    motion_blur,
    motion_kernels,
    pil_to_tensor,
    sr_downsample,
    tensor_to_pil,
)

TASKS = ("denoise", "sr4", "jpeg", "motion_deblur", "defocus_deblur")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def smooth_image(n=2, h=64, w=96, seed=0):
    """A photo-like batch in [0, 1]: smooth colour fields, a few edges and some texture."""
    g = gen(seed)
    coarse = torch.rand(n, 3, h // 8, w // 8, generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = x + 0.15 * torch.sin(25 * xx + 9 * yy) + 0.3 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.06).float()
    return x.clamp(0, 1)


def to_pil(x):  # (3, H, W) -> RGB
    return Image.fromarray((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def pil_array(im):
    return np.asarray(im).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------
# registry and common contract
# ----------------------------------------------------------------------------------------------------------------
def test_registry_covers_the_five_tasks():
    assert set(DEGRADATIONS) == set(TASKS) and set(TASK_IDS) == set(TASKS)
    for fn in DEGRADATIONS.values():
        assert callable(fn)


@pytest.mark.parametrize("task", TASKS)
def test_shape_dtype_device_and_determinism(task):
    x = smooth_image()
    y1 = degrade(task, x, generator=gen(3))
    y2 = degrade(task, x, generator=gen(3))
    assert y1.shape == x.shape and y1.dtype == x.dtype and y1.device == x.device
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2), "same seed must give identical output"
    assert not torch.allclose(y1, x, atol=1e-3), "the degradation changed nothing"
    if task != "sr4":  # sr4 is deterministic
        assert not torch.equal(y1, degrade(task, x, generator=gen(4))), "different seeds gave identical output"
    assert torch.equal(DEGRADATIONS[task](x, generator=gen(3)), y1)


def test_float64_input_keeps_dtype():
    x = smooth_image(n=1).double()
    for task in TASKS:
        assert degrade(task, x, generator=gen(0)).dtype == torch.float64


def test_unknown_task_lists_valid_ids():
    with pytest.raises(ValueError) as err:
        degrade("deblur", smooth_image(n=1))
    for task in TASKS:
        assert task in str(err.value)
    with pytest.raises(ValueError, match="valid task ids"):
        degrade_pil("inpaint", Image.new("RGB", (16, 16)))


@pytest.mark.parametrize("task", TASKS)
def test_bad_inputs_raise_clear_errors(task):
    x = smooth_image(n=1)
    with pytest.raises(ValueError, match="4-D"):
        degrade(task, x[0])
    with pytest.raises(ValueError, match="torch.Tensor"):
        degrade(task, x.numpy())
    with pytest.raises(ValueError, match="floating-point"):
        degrade(task, (x * 255).to(torch.uint8))
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        degrade(task, bad)
    bad[0, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="Inf"):
        degrade(task, bad)
    # check_finite=False skips only the NaN/Inf check (it reads a value back from a GPU): the rest is still checked
    assert degrade(task, bad, check_finite=False).shape == bad.shape
    with pytest.raises(ValueError, match="4-D"):
        degrade(task, bad[0], check_finite=False)


def test_parameter_errors():
    x = smooth_image(n=2)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        add_gaussian_noise(x, sigma=-0.1)
    with pytest.raises(ValueError, match="one value per image"):
        add_gaussian_noise(x, sigma=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="channels"):
        jpeg_compress(torch.rand(1, 4, 16, 16), quality=20)
    with pytest.raises(ValueError, match="quality must be an integer"):
        jpeg_compress(x, quality=20.5)
    with pytest.raises(ValueError, match="odd"):
        blur(x, torch.ones(4, 4) / 16)
    with pytest.raises(ValueError, match="too small"):
        blur(torch.rand(1, 3, 8, 8), torch.ones(33, 33) / 33**2)
    with pytest.raises(ValueError, match="too small"):
        motion_kernels(2, size=21, length_range=(5, 25))
    with pytest.raises(ValueError, match="radius must be >= 0"):
        defocus_blur(x, radius=[-1.0, 2.0])


def test_noise_and_blur_accept_any_channel_count():
    x = torch.rand(2, 5, 32, 32, generator=gen(0))
    for task in ("denoise", "motion_deblur", "defocus_deblur"):
        assert degrade(task, x, generator=gen(0)).shape == x.shape
    assert degrade_sr4(x).shape == x.shape
    grey = torch.rand(2, 1, 32, 32, generator=gen(0))
    assert jpeg_compress(grey, quality=30).shape == grey.shape


# ----------------------------------------------------------------------------------------------------------------
# denoise
# ----------------------------------------------------------------------------------------------------------------
def test_noise_std_matches_sigma_and_is_not_clipped():
    x = torch.full((2, 3, 256, 256), 0.05)
    sigma = 25.0 / 255.0
    y = add_gaussian_noise(x, sigma=sigma, generator=gen(0))
    std = (y - x).flatten(1).std(dim=1)
    assert torch.allclose(std, torch.full_like(std, sigma), rtol=0.02)
    assert abs(float((y - x).mean())) < 0.02 * sigma
    assert (y < 0).any(), "noise must not be clipped"


def test_noise_per_image_sigma():
    x = torch.full((4, 3, 128, 128), 0.5)
    sigmas = torch.tensor([0.0, 0.05, 0.1, 0.2])
    std = (add_gaussian_noise(x, sigma=sigmas, generator=gen(1)) - x).flatten(1).std(dim=1)
    assert std[0] == 0
    assert torch.allclose(std[1:], sigmas[1:], rtol=0.02)
    # random sigmas: one per image, within [0, sigma_max]
    x = torch.full((8, 3, 64, 64), 0.5)
    std = (add_gaussian_noise(x, generator=gen(2)) - x).flatten(1).std(dim=1)
    assert (std <= 50 / 255 * 1.03).all() and std.unique().numel() == 8


# ----------------------------------------------------------------------------------------------------------------
# sr4
# ----------------------------------------------------------------------------------------------------------------
def test_sr4_sizes():
    x = smooth_image(n=2, h=64, w=96)
    lr = bicubic_downsample(x)
    assert lr.shape == (2, 3, 16, 24)
    assert bicubic_upsample(lr).shape == x.shape
    assert bicubic_upsample(lr, size=(40, 50)).shape == (2, 3, 40, 50)
    y = degrade_sr4(x)
    assert y.shape == x.shape
    assert torch.allclose(y, bicubic_upsample(lr, size=(64, 96)))
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_sr4_rejects_sizes_not_divisible_by_4_and_crop_helper():
    x = smooth_image(n=1, h=66, w=97)
    with pytest.raises(ValueError, match="66x97"):
        degrade_sr4(x)
    c = crop_to_multiple(x, 4)
    assert c.shape == (1, 3, 64, 96) and torch.equal(c, x[..., :64, :96])
    assert degrade_sr4(c).shape == c.shape


def test_bicubic_matches_pil_float_mode():
    """In float, torch's antialiased bicubic is PIL's BICUBIC filter (PIL 'F' mode keeps floats throughout)."""
    a = (smooth_image(n=1, h=64, w=96)[0, 0] * 255).numpy().astype(np.float32)
    im = Image.fromarray(a, mode="F")
    t = torch.from_numpy(a)[None, None] / 255
    down = bicubic_downsample(t, clamp=False)[0, 0].numpy() * 255
    ref = np.asarray(im.resize((24, 16), Image.BICUBIC))
    assert np.abs(down - ref).max() < 1e-3
    small = Image.fromarray(ref)
    up = bicubic_upsample(torch.from_numpy(ref.copy())[None, None] / 255, scale=4, clamp=False)[0, 0].numpy() * 255
    assert np.abs(up - np.asarray(small.resize((96, 64), Image.BICUBIC))).max() < 1e-3


def test_bicubic_close_to_pil_uint8():
    """On 8-bit RGB, PIL rounds and clips to uint8 between its horizontal and vertical passes, so torch's float
    result differs by a few levels at strong edges; emulating that 8-bit intermediate brings it within 1 level."""
    x = smooth_image(n=1, h=128, w=160)
    im = to_pil(x[0])
    x8 = pil_to_tensor(im)

    def pil_like(t, size):  # two passes with a uint8 intermediate, like PIL's ImagingResample on 8-bit images
        h = F.interpolate(t * 255, size=(t.shape[-2], size[1]), mode="bicubic", antialias=True).round().clamp(0, 255)
        out = F.interpolate(h, size=size, mode="bicubic", antialias=True).round().clamp(0, 255)
        return out[0].permute(1, 2, 0).numpy()

    ref = pil_array(im.resize((40, 32), Image.BICUBIC))
    diff = np.abs((bicubic_downsample(x8) * 255).round()[0].permute(1, 2, 0).numpy() - ref)
    assert diff.max() <= 4 and diff.mean() < 0.15
    assert np.abs(pil_like(x8, (32, 40)) - ref).max() <= 1
    small = Image.fromarray(ref.astype(np.uint8))
    ref_up = pil_array(small.resize((160, 128), Image.BICUBIC))
    diff = np.abs((bicubic_upsample(pil_to_tensor(small)) * 255).round()[0].permute(1, 2, 0).numpy() - ref_up)
    assert diff.max() <= 6 and diff.mean() < 0.3
    assert np.abs(pil_like(pil_to_tensor(small), (128, 160)) - ref_up).max() <= 1


# ----------------------------------------------------------------------------------------------------------------
# jpeg
# ----------------------------------------------------------------------------------------------------------------
def pil_jpeg(im, quality):
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return pil_array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_jpeg_equals_direct_pil_at_given_quality():
    x = smooth_image(n=2)
    y = jpeg_compress(x, quality=[15, 45])
    for i, q in enumerate((15, 45)):
        ref = pil_jpeg(to_pil(x[i]), q)
        assert np.array_equal((y[i] * 255).round().permute(1, 2, 0).numpy(), ref)
    assert not torch.equal(y[0], y[1]) and (y - x).abs().mean() > 0.002


def test_sr_downsample_box_is_block_means_bilinear_differs_and_bicubic_is_the_definition():
    x = smooth_image(n=2)
    assert torch.equal(sr_downsample(x, 4, "bicubic"), bicubic_downsample(x, 4))
    box = sr_downsample(x, 4, "box")
    assert torch.allclose(box[..., 0, 0], x[..., :4, :4].mean(dim=(-1, -2)))
    bilinear = sr_downsample(x, 4, "bilinear")
    assert bilinear.shape == box.shape and not torch.allclose(bilinear, bicubic_downsample(x, 4), atol=1e-4)
    with pytest.raises(ValueError, match="unknown downscale 'lanczos'"):
        sr_downsample(x, 4, "lanczos")


def test_jpeg_subsampling_per_image_equals_pil_and_bad_values_are_refused():
    x = smooth_image(n=2)
    y = jpeg_compress(x, quality=60, subsampling=[0, 2])
    for i, chroma in enumerate((0, 2)):
        buf = io.BytesIO()
        to_pil(x[i]).save(buf, format="JPEG", quality=60, subsampling=chroma)
        ref = pil_array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert np.array_equal((y[i] * 255).round().permute(1, 2, 0).numpy(), ref)
    assert torch.equal(jpeg_compress(x, quality=60, subsampling=2), jpeg_compress(x, quality=60))  # PIL's default
    with pytest.raises(ValueError, match="subsampling must be 0"):
        jpeg_compress(x, quality=60, subsampling=3)


def test_jpeg_random_quality_is_applied():
    """Random qualities are drawn in [10, 50] from the generator; each output equals PIL at that quality."""
    x = smooth_image(n=4)
    y = jpeg_compress(x, generator=gen(7))
    q = torch.randint(10, 51, (4,), generator=gen(7))  # the same draw
    for i in range(4):
        out = (y[i] * 255).round().permute(1, 2, 0).numpy()
        assert np.array_equal(out, pil_jpeg(to_pil(x[i]), int(q[i])))
        others = [qq for qq in (10, 20, 30, 40, 50) if qq != int(q[i])]
        assert not any(np.array_equal(out, pil_jpeg(to_pil(x[i]), qq)) for qq in others)


# ----------------------------------------------------------------------------------------------------------------
# motion blur
# ----------------------------------------------------------------------------------------------------------------
def support_extent(kernel, thresh=0.0):
    rc = torch.nonzero(kernel > thresh).double()
    return float(torch.cdist(rc, rc).max())


def test_motion_kernels_are_normalised_random_walks_of_the_right_extent():
    k, traj = motion_kernels(24, generator=gen(0), return_trajectories=True)
    assert k.shape == (24, 33, 33) and k.dtype == torch.float32
    assert (k >= 0).all()
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(24), atol=1e-5)
    for j in range(24):
        p = torch.from_numpy(traj[j])
        extent = float(torch.cdist(p, p).max())
        assert 5 - 1e-6 <= extent <= 25 + 1e-6
        # bilinear splatting puts support at most one pixel beyond the trajectory in each axis
        assert extent - math.sqrt(2) <= support_extent(k[j]) <= extent + 2 * math.sqrt(2)
    # not all identical, and lengths spread over the range
    assert (k[1:] - k[:1]).abs().amax(dim=(1, 2)).min() > 1e-3
    ext = [support_extent(kk) for kk in k]
    assert min(ext) < 12 and max(ext) > 18
    # no net shift: the kernel's centroid is the centre
    c = torch.arange(33.0) - 16
    assert float((k.sum(2) * c).sum(1).abs().max()) < 1e-3 and float((k.sum(1) * c).sum(1).abs().max()) < 1e-3


def test_motion_kernel_length_range_is_respected():
    k = motion_kernels(6, length_range=(25, 25), generator=gen(1))
    assert all(23.5 <= support_extent(kk) <= 25 + 2 * math.sqrt(2) for kk in k)
    k = motion_kernels(6, size=13, length_range=(5, 5), generator=gen(1))
    assert k.shape == (6, 13, 13) and all(3.5 <= support_extent(kk) <= 5 + 2 * math.sqrt(2) for kk in k)


def test_motion_blur_uses_given_kernels_and_adds_noise():
    x = smooth_image(n=2)
    k = motion_kernels(2, generator=gen(0))
    y = motion_blur(x, kernels=k, noise_sigma=0.0)
    assert torch.allclose(y, blur(x, k))
    yn = motion_blur(x, kernels=k, noise_sigma=0.01, generator=gen(0))
    assert abs(float((yn - y).std()) - 0.01) < 0.001
    yr = motion_blur(x, generator=gen(5))
    assert ((yr - blur(x, motion_kernels(2, generator=gen(5)))).flatten(1).std(1) <= 2 / 255 * 1.1).all()


def test_blur_is_one_true_convolution_per_image():
    """An impulse image blurs into the kernel itself (convolution, not correlation), one kernel per image."""
    k = torch.zeros(2, 5, 5)
    k[0, 0, 1] = 1.0  # asymmetric
    k[1] = torch.rand(5, 5, generator=gen(0))
    k[1] /= k[1].sum()
    x = torch.zeros(2, 3, 15, 15)
    x[:, :, 7, 7] = 1.0
    y = blur(x, k)
    for i in range(2):
        for c in range(3):
            assert torch.allclose(y[i, c, 5:10, 5:10], k[i], atol=1e-6)
    # equals per-image F.conv2d with reflect padding
    x = smooth_image(n=2, h=20, w=24)
    y = blur(x, k)
    for i in range(2):
        padded = F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect")
        ref = F.conv2d(padded, k[i].flip(-2, -1).expand(3, 1, 5, 5), groups=3)
        assert torch.allclose(y[i : i + 1], ref, atol=1e-6)
    # a constant image stays constant (kernels sum to 1, reflect padding)
    assert torch.allclose(blur(torch.full((2, 3, 20, 20), 0.3), k), torch.full((2, 3, 20, 20), 0.3), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# defocus blur
# ----------------------------------------------------------------------------------------------------------------
def test_disk_kernels_sum_to_one_and_have_radius_r():
    radii = torch.tensor([2.0, 3.0, 4.5, 6.0])
    k = disk_kernels(radii).double()
    assert k.shape == (4, 13, 13)
    assert (k >= 0).all() and torch.allclose(k.sum(dim=(1, 2)), torch.ones(4, dtype=torch.float64))
    c = torch.arange(13.0, dtype=torch.float64) - 6
    d2 = c.view(-1, 1) ** 2 + c.view(1, -1) ** 2
    # second moment of a uniform disk: E[d^2] = r^2 / 2, plus 1/6 for the pixel's own extent (1/12 per axis)
    r_eff = torch.sqrt(2 * ((k * d2).sum(dim=(1, 2)) - 1.0 / 6.0))
    assert torch.allclose(r_eff, radii.double(), rtol=0.02)
    for i, r in enumerate(radii.tolist()):
        d = d2.sqrt()
        assert (k[i][d > r + math.sqrt(0.5)] == 0).all(), "support beyond the disk"
        full = k[i][d < r - math.sqrt(0.5)]
        assert torch.allclose(full, torch.full_like(full, float(k[i].max()))), "interior pixels must be fully covered"
        edge = k[i][(d > r - 0.5) & (d < r + 0.5)]
        assert ((edge > 0) & (edge < k[i].max())).any(), "edge pixels must be antialiased"
    # symmetric
    assert torch.allclose(k, k.flip(-1)) and torch.allclose(k, k.transpose(-1, -2))


def test_disk_small_radius_is_identity_and_defocus_range():
    k = disk_kernels(0.3, size=5)
    assert k.shape == (1, 5, 5) and k[0, 2, 2] == 1.0
    x = smooth_image(n=1)
    assert torch.allclose(defocus_blur(x, radius=0.0, noise_sigma=0.0), x, atol=1e-6)
    y = defocus_blur(smooth_image(n=3), generator=gen(0))
    assert y.shape == (3, 3, 64, 96)
    # larger radius blurs more
    x = smooth_image(n=1)
    e = [float((defocus_blur(x, radius=r, noise_sigma=0.0) - x).abs().mean()) for r in (1.0, 3.0, 6.0)]
    assert e[0] < e[1] < e[2]


# ----------------------------------------------------------------------------------------------------------------
# PIL convenience
# ----------------------------------------------------------------------------------------------------------------
def test_degrade_pil():
    im = to_pil(smooth_image(n=1, h=66, w=130)[0])
    lr = degrade_pil("sr4", im)
    assert lr.size == (32, 16) and lr.mode == "RGB"
    ref = pil_array(im.crop((0, 0, 128, 64)).resize((32, 16), Image.BICUBIC))
    assert np.abs(pil_array(lr) - ref).max() <= 4
    for task in ("denoise", "jpeg", "motion_deblur", "defocus_deblur"):
        out = degrade_pil(task, im, seed=1)
        assert out.size == im.size and out.mode == "RGB"
        assert np.array_equal(np.asarray(out), np.asarray(degrade_pil(task, im, seed=1)))
        assert not np.array_equal(np.asarray(out), np.asarray(im))
    a, b = degrade_pil("denoise", im, seed=1), degrade_pil("denoise", im, seed=2)
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    # keyword arguments reach the task function
    out = degrade_pil("jpeg", im.convert("RGBA"), quality=30)
    assert np.array_equal(pil_array(out), pil_jpeg(im, 30))


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_degradation_noise_is_independent_of_a_walk_with_the_same_seed(seed):
    """`indi degrade --seed s` then `indi restore --seed s` (and the evaluation, and the demo's "degrade first"):
    the walk's start noise must not be the degradation's own noise.  Seeded alike, both are the first randn of
    the image's shape: correlation 1, and the denoiser saw sigma + eps of one noise (lost 0.1-0.4 dB)."""
    from diffusers.utils.torch_utils import randn_tensor

    clean = torch.full((1, 3, 64, 64), 0.5)
    for task, kwargs in (("denoise", {"sigma": 50 / 255}), ("denoise", {}), ("motion_deblur", {"noise_sigma": 0.01})):
        residual = degrade(task, clean, generator=degradation_generator(seed), **kwargs) - clean
        walk_noise = randn_tensor(clean.shape, generator=torch.Generator().manual_seed(seed))
        corr = torch.corrcoef(torch.stack([residual.flatten(), walk_noise.flatten()]))[0, 1]
        assert abs(corr) < 0.05, (task, kwargs, float(corr))
    # degrade_pil draws from that stream
    im = to_pil(smooth_image(n=1, h=32, w=32)[0])
    expected = degrade(TASKS[0], pil_to_tensor(im), generator=degradation_generator(seed), sigma=0.1)
    degraded = degrade_pil("denoise", im, seed=seed, sigma=0.1)
    assert np.array_equal(np.asarray(degraded), np.asarray(tensor_to_pil(expected)))


@pytest.mark.parametrize("seed", [1.5, "0", True, None])
def test_degradation_generator_rejects_non_integer_seeds(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        degradation_generator(seed)
