"""InDIPipeline: the design.md §3 contract with tiny components (2-3 steps, small images, CPU)."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import TINY_NET_KWARGS, make_tiny_pipeline
from diffusers import UNet2DModel

from indi_pipeline import InDINet, InDIPipeline, InDIPipelineOutput, InDIScheduler
from indi_pipeline.degradations import bicubic_upsample

STEPS = 2


def _rgb_uint8(h, w, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _pil(h, w, mode="RGB", seed=0):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    return PIL.Image.fromarray(_rgb_uint8(h, w, channels, seed), mode)


def _run(pipe, image, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    return pipe(image, **kwargs)


# ------------------------------------------------------------------------------------------------------- inputs
def test_pil_rgb_single_and_batch(tiny_pipe):
    out = _run(tiny_pipe, _pil(16, 24), output_type="pil")
    assert isinstance(out, InDIPipelineOutput)
    assert len(out.images) == 1
    assert out.images[0].mode == "RGB" and out.images[0].size == (24, 16)
    assert out.trajectory is None and out.timesteps is None
    batch = _run(tiny_pipe, [_pil(16, 24, seed=1), _pil(16, 24, seed=2)], output_type="pil").images
    assert [im.size for im in batch] == [(24, 16), (24, 16)]


def test_the_network_actually_changes_the_image(tiny_pipe):
    image = _rgb_uint8(16, 16).astype(np.float32) / 255
    out = _run(tiny_pipe, image).images[0]
    assert np.abs(out - image).max() > 1e-3


def test_numpy_dtypes_agree(tiny_pipe):
    u8 = _rgb_uint8(16, 16)
    as_float = u8.astype(np.float32) / 255.0
    u16 = (as_float * 65535.0).round().astype(np.uint16)
    ref = _run(tiny_pipe, as_float).images
    assert ref.shape == (1, 16, 16, 3) and ref.dtype == np.float32
    np.testing.assert_allclose(_run(tiny_pipe, u8).images, ref, atol=1e-6)
    np.testing.assert_allclose(_run(tiny_pipe, u16).images, ref, atol=1e-5)
    np.testing.assert_allclose(_run(tiny_pipe, as_float.astype(np.float64)).images, ref, atol=1e-6)
    np.testing.assert_allclose(_run(tiny_pipe, PIL.Image.fromarray(u8)).images, ref, atol=1e-6)


def test_numpy_batch_and_torch_inputs(tiny_pipe):
    batch = np.stack([_rgb_uint8(8, 16, seed=s) for s in range(3)]).astype(np.float32) / 255
    out_np = _run(tiny_pipe, batch).images
    assert out_np.shape == (3, 8, 16, 3)
    tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
    out_pt = _run(tiny_pipe, tensor, output_type="pt").images
    assert isinstance(out_pt, torch.Tensor) and out_pt.shape == (3, 3, 8, 16)
    np.testing.assert_allclose(out_pt.permute(0, 2, 3, 1).numpy(), out_np, atol=1e-6)
    single = _run(tiny_pipe, tensor[1], output_type="pt").images  # C x H x W
    assert single.shape == (1, 3, 8, 16)
    torch.testing.assert_close(single[0], out_pt[1], atol=1e-5, rtol=0)


def test_grayscale(tiny_pipe):
    out = _run(tiny_pipe, _pil(16, 16, "L"), output_type="pil").images[0]
    assert out.mode == "L" and out.size == (16, 16)
    gray = _rgb_uint8(16, 16, channels=1).astype(np.float32) / 255
    out_np = _run(tiny_pipe, gray).images  # H x W array
    assert out_np.shape == (1, 16, 16, 1)
    assert _run(tiny_pipe, torch.from_numpy(gray)[None], output_type="pt").images.shape == (1, 1, 16, 16)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_passes_through_untouched(noisy_pipe, mode):
    image = _pil(16, 24, mode, seed=4)
    out = noisy_pipe(image, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)).images[0]
    assert out.mode == mode and out.size == image.size
    assert np.array_equal(np.asarray(out)[..., -1], np.asarray(image)[..., -1])
    # the colour channels were restored (changed), not copied
    assert not np.array_equal(np.asarray(out)[..., 0], np.asarray(image)[..., 0])
    rgba = _rgb_uint8(7, 13, channels=4, seed=5)
    out_np = _run(noisy_pipe, rgba, generator=torch.Generator().manual_seed(0)).images[0]
    assert out_np.shape == (7, 13, 4)
    assert np.array_equal((out_np[..., 3] * 255).round().astype(np.uint8), rgba[..., 3])


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (37, 53)])
def test_odd_sizes_come_back_at_the_same_size(tiny_pipe, size):
    h, w = size
    assert _run(tiny_pipe, _pil(h, w), output_type="pil").images[0].size == (w, h)
    assert _run(tiny_pipe, _rgb_uint8(h, w)).images.shape == (1, h, w, 3)
    assert _run(tiny_pipe, torch.rand(3, h, w), output_type="pt").images.shape == (1, 3, h, w)


def test_mixed_sizes_give_per_image_outputs(tiny_pipe):
    images = [_pil(8, 16), _pil(5, 7), _pil(8, 16, seed=3)]
    pil = _run(tiny_pipe, images, output_type="pil").images
    assert [im.size for im in pil] == [(16, 8), (7, 5), (16, 8)]
    arrays = _run(tiny_pipe, images).images
    assert isinstance(arrays, list) and [a.shape for a in arrays] == [(8, 16, 3), (5, 7, 3), (8, 16, 3)]
    tensors = _run(tiny_pipe, [torch.rand(3, 8, 16), torch.rand(1, 5, 7)], output_type="pt").images
    assert [tuple(t.shape) for t in tensors] == [(3, 8, 16), (1, 5, 7)]


# ------------------------------------------------------------------------------------------------------ outputs
def test_output_types_and_ranges(noisy_pipe):
    image = torch.rand(2, 3, 8, 8)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pil = noisy_pipe(image, num_inference_steps=STEPS, generator=g(), output_type="pil").images
    arr = noisy_pipe(image, num_inference_steps=STEPS, generator=g(), output_type="np").images
    pt = noisy_pipe(image, num_inference_steps=STEPS, generator=g(), output_type="pt").images
    assert isinstance(pil, list) and len(pil) == 2 and all(isinstance(im, PIL.Image.Image) for im in pil)
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 8, 8, 3) and arr.dtype == np.float32
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 3, 8, 8) and pt.dtype == torch.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    assert pt.min() >= 0.0 and pt.max() <= 1.0
    np.testing.assert_array_equal(pt.permute(0, 2, 3, 1).numpy(), arr)
    np.testing.assert_array_equal(np.asarray(pil[1]), (arr[1] * 255).round().astype(np.uint8))


def test_return_dict_false(tiny_pipe):
    image = torch.rand(3, 8, 8)
    out = tiny_pipe(image, num_inference_steps=STEPS, output_type="np", return_dict=False)
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_array_equal(out[0], _run(tiny_pipe, image).images)
    images, trajectory = tiny_pipe(
        image, num_inference_steps=STEPS, output_type="np", return_dict=False, return_trajectory=True
    )
    assert len(trajectory) == STEPS + 1
    np.testing.assert_array_equal(trajectory[-1], images)


def test_identity_network_returns_the_input():
    """A fresh InDINet is the identity, so every InDI step keeps x_t: the output is the (upsampled) input."""
    torch.manual_seed(0)
    scheduler = InDIScheduler()
    pipe = InDIPipeline(unet=InDINet(**TINY_NET_KWARGS), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 7, 13)
    out = pipe(image, num_inference_steps=3, output_type="pt").images
    torch.testing.assert_close(out, image, atol=1e-6, rtol=0)
    sr = InDIPipeline(unet=InDINet(**TINY_NET_KWARGS), scheduler=scheduler, upscale_factor=4)
    sr.set_progress_bar_config(disable=True)
    out = sr(image, num_inference_steps=2, output_type="pt").images
    torch.testing.assert_close(out, bicubic_upsample(image, scale=4), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------- randomness
def test_seeds(noisy_pipe):
    image = _pil(16, 16)

    def run(seed, **kwargs):
        return _run(noisy_pipe, image, generator=torch.Generator().manual_seed(seed), **kwargs).images

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a, b)  # bit-identical on CPU
    assert not np.allclose(a, c)
    # eps = 0 for this call: deterministic whatever the seed
    assert np.array_equal(run(0, eps=0.0), run(1, eps=0.0))
    # the pipeline's scheduler is not changed by a call
    assert noisy_pipe.scheduler.config.eps == 0.05
    assert noisy_pipe.scheduler.num_inference_steps is None


def test_brownian_seeds():
    pipe = make_tiny_pipeline(eps=0.05, noise_schedule="brownian")
    image = torch.rand(1, 3, 8, 8)
    runs = [
        pipe(image, num_inference_steps=3, generator=torch.Generator().manual_seed(s), output_type="pt").images
        for s in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


def test_generator_list_is_per_image(noisy_pipe):
    images = torch.rand(2, 3, 8, 8)
    batch = noisy_pipe(
        images,
        num_inference_steps=STEPS,
        generator=[torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)],
        output_type="pt",
    ).images
    second = noisy_pipe(
        images[1:], num_inference_steps=STEPS, generator=[torch.Generator().manual_seed(11)], output_type="pt"
    ).images
    torch.testing.assert_close(batch[1:], second, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="generators"):
        noisy_pipe(images, num_inference_steps=STEPS, generator=[torch.Generator()], output_type="pt")


# --------------------------------------------------------------------------------------------- strength, trajectory
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_strength_and_trajectory(tiny_pipe, strength):
    steps = 3
    image = torch.rand(1, 3, 8, 8)
    out = tiny_pipe(image, num_inference_steps=steps, strength=strength, output_type="pt", return_trajectory=True)
    assert len(out.timesteps) == steps + 1 and len(out.trajectory) == steps + 1
    assert out.timesteps[0] == pytest.approx(strength)
    assert out.timesteps[-1] == 0.0
    np.testing.assert_allclose(out.timesteps, [strength * (1 - i / steps) for i in range(steps + 1)], atol=1e-6)
    assert torch.equal(out.trajectory[0], image)  # eps = 0: the walk starts at the input itself
    assert torch.equal(out.trajectory[-1], out.images)
    for frame in out.trajectory:
        assert frame.shape == image.shape


def test_strength_first_frame_with_noise():
    eps, strength = 0.1, 0.5
    pipe = make_tiny_pipeline(eps=eps)
    image = 0.25 + 0.5 * torch.rand(1, 3, 8, 8)  # away from the clamp
    out = pipe(
        image,
        num_inference_steps=2,
        strength=strength,
        output_type="pt",
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    expected = (image + strength * eps * noise).clamp(0, 1)  # x_t0 = y + t0 * eps * eta
    torch.testing.assert_close(out.trajectory[0], expected, atol=1e-6, rtol=0)


def test_strength_changes_the_result(tiny_pipe):
    image = torch.rand(1, 3, 8, 8)
    full = _run(tiny_pipe, image, output_type="pt").images
    half = _run(tiny_pipe, image, output_type="pt", strength=0.5).images
    assert not torch.allclose(full, half)


# --------------------------------------------------------------------------------------------------- callback
def test_callback_on_step_end(tiny_pipe):
    calls = []

    def callback(pipe, i, t, kwargs):
        calls.append((i, float(t), sorted(kwargs)))
        assert pipe is tiny_pipe
        return {"sample": torch.full_like(kwargs["sample"], 0.25)}

    steps = 3
    out = tiny_pipe(
        torch.rand(1, 3, 8, 8),
        num_inference_steps=steps,
        output_type="pt",
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["sample", "pred_original_sample"],
    )
    assert [c[0] for c in calls] == list(range(steps))
    assert [c[1] for c in calls] == pytest.approx([1000.0 * (1 - i / steps) for i in range(steps)], abs=1e-3)
    assert all(c[2] == ["pred_original_sample", "sample"] for c in calls)
    assert torch.equal(out.images, torch.full((1, 3, 8, 8), 0.25))  # the replaced sample is what comes out
    with pytest.raises(ValueError, match="callback"):
        tiny_pipe(torch.rand(1, 3, 8, 8), callback_on_step_end_tensor_inputs=["latents"])


def test_callback_returning_none_changes_nothing(tiny_pipe):
    image = torch.rand(1, 3, 8, 8)
    count = []
    out = _run(tiny_pipe, image, output_type="pt", callback_on_step_end=lambda *a: count.append(1)).images
    assert len(count) == STEPS
    assert torch.equal(out, _run(tiny_pipe, image, output_type="pt").images)


# ------------------------------------------------------------------------------------------- super-resolution, UNet
def test_super_resolution_is_4x_larger():
    pipe = make_tiny_pipeline(upscale_factor=4)
    assert _run(pipe, _pil(5, 7), output_type="pil").images[0].size == (28, 20)
    assert _run(pipe, np.zeros((2, 4, 6, 3), np.uint8)).images.shape == (2, 16, 24, 3)
    rgba = _pil(3, 5, "RGBA")
    out = _run(pipe, rgba, output_type="pil").images[0]
    assert out.mode == "RGBA" and out.size == (20, 12)
    with pytest.raises(ValueError, match="upscale_factor"):
        make_tiny_pipeline(upscale_factor=0)


def test_diffusers_unet_as_network():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=None,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
    pipe = InDIPipeline(unet=unet, scheduler=InDIScheduler(eps=0.02))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.input_multiple == 2
    out = pipe(_pil(7, 13), num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 7, 13, 3)
    assert np.isfinite(out.images).all()
    again = pipe(_pil(7, 13), num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np")
    assert np.array_equal(out.images, again.images)


# -------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "image, exc, word",
    [
        (np.zeros((0, 5, 3), np.float32), ValueError, "empty"),
        (np.zeros((4, 0, 3), np.uint8), ValueError, "empty"),
        ([], ValueError, "empty"),
        (torch.tensor(float("nan")).expand(1, 3, 4, 4).clone(), ValueError, "NaN"),
        (torch.full((3, 4, 4), float("inf")), ValueError, "Inf"),
        (np.zeros((8, 8, 5), np.float32), ValueError, "channels"),
        (torch.zeros(1, 6, 8, 8), ValueError, "channels"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int64), ValueError, "int64"),
        (np.zeros((8, 8, 3), np.int32), ValueError, "dtype"),
        (np.zeros((1, 2, 8, 8, 3), np.float32), ValueError, "shape"),
        ("not an image", TypeError, "PIL image"),
        ({"pixels": 1}, TypeError, "PIL image"),
        ([_pil(4, 4), 3], TypeError, r"image\[1\]"),
    ],
)
def test_bad_images(tiny_pipe, image, exc, word):
    with pytest.raises(exc, match=word):
        _run(tiny_pipe, image)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=2.5), "num_inference_steps"),
        (dict(num_inference_steps=True), "num_inference_steps"),
        (dict(strength=0.0), "strength"),
        (dict(strength=1.5), "strength"),
        (dict(output_type="jpg"), "output_type"),
    ],
)
def test_bad_arguments(tiny_pipe, kwargs, word):
    with pytest.raises(ValueError, match=word):
        _run(tiny_pipe, torch.rand(3, 8, 8), **kwargs)
