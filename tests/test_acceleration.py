"""acceleration.py: channels_last on the CPU, and torch.compile giving the same restorations as eager."""

import os

import torch

from indi_pipeline.acceleration import COMPILE_CACHE_ENV, optimize_for_inference

from conftest import make_tiny_pipeline


def _restore(pipe, image, steps=3):
    return pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_channels_last_gives_the_same_restoration():
    image = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    eager = _restore(make_tiny_pipeline(eps=0.02), image)
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02))
    assert pipe.unet.intro.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipe._network_memory_format() == torch.channels_last
    torch.testing.assert_close(_restore(pipe, image), eager, rtol=1e-4, atol=1e-5)


def test_compiled_network_matches_eager(inductor_cache):
    """The real inductor path (frozen weights, C++ kernels) on a tiny net; its kernels go to the given cache."""
    assert os.environ[COMPILE_CACHE_ENV] == str(inductor_cache)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    eager = _restore(make_tiny_pipeline(eps=0.02), image)
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02), compile=True)
    compiled = _restore(pipe, image)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_restore(pipe, image), compiled)  # the second call reuses the compiled graph
    assert any(inductor_cache.rglob("*")), "compiled kernels should be cached in TORCHINDUCTOR_CACHE_DIR"
