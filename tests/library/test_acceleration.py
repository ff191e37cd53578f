"""acceleration.py: channels_last and reused memory on the CPU, and torch.compile giving the same restorations as
eager."""

import os
import platform
import subprocess
import sys

import pytest
import torch
from conftest import make_tiny_pipeline

from indi_pipeline import acceleration
from indi_pipeline.acceleration import ALLOCATOR_ENV, COMPILE_CACHE_ENV, optimize_for_inference


def _restore(pipe, image, steps=3):
    return pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt").images


@pytest.mark.slow
def test_channels_last_gives_the_same_restoration():
    image = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    eager = _restore(make_tiny_pipeline(eps=0.02), image)
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02), dtype="fp32")  # the memory format alone
    assert pipe.unet.intro.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipe._network_memory_format() == torch.channels_last
    torch.testing.assert_close(_restore(pipe, image), eager, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_network_matches_eager(inductor_cache):
    """The real inductor path (frozen weights, C++ kernels) on a tiny net; its kernels go to the given cache."""
    assert os.environ[COMPILE_CACHE_ENV] == str(inductor_cache)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    eager = _restore(make_tiny_pipeline(eps=0.02), image)
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02), compile=True, dtype="fp32")
    compiled = _restore(pipe, image)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_restore(pipe, image), compiled)  # the second call reuses the compiled graph
    assert any(inductor_cache.rglob("*")), "compiled kernels should be cached in TORCHINDUCTOR_CACHE_DIR"


FREED_AND_RETURNED = """
import torch
from indi_pipeline.acceleration import reuse_freed_memory
print(reuse_freed_memory())
resident = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
maps = [torch.empty(2 * 2**20).fill_(1.0) for _ in range(25)]  # 25 feature maps of 8 MiB, touched
before = resident()
del maps
print((before - resident()) / 2**20)  # MiB handed back to the kernel when they were freed
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_reused_memory_stays_in_the_process_instead_of_going_back_to_the_kernel():
    """With glibc's defaults, freed 8 MiB feature maps go back to the kernel, so the next forward page-faults them in
    again (measured: 5,728 page faults per 256x256 forward of the zoo network, 171 with reuse_freed_memory)."""

    def returned_mib(**env):
        result = subprocess.run(
            [sys.executable, "-c", FREED_AND_RETURNED],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        report, returned = result.stdout.strip().splitlines()[-2:]
        return report, float(returned)

    tuned_report, tuned = returned_mib()
    default_report, default = returned_mib(INDI_CPU_ALLOCATOR="default")
    assert tuned_report.startswith("glibc malloc: mmap threshold 32 MiB")
    assert default_report == "malloc defaults (INDI_CPU_ALLOCATOR=default)"
    assert default > 150 and tuned < 10, (tuned, default)


def test_allocator_choices_of_the_user_are_left_alone(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", ALLOCATOR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert acceleration._tune_glibc_malloc() == "malloc as configured by the user (MALLOC_TRIM_THRESHOLD_)"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert "LD_PRELOAD=/usr/lib/libjemalloc.so.2" in acceleration._tune_glibc_malloc()
    monkeypatch.setenv(ALLOCATOR_ENV, "default")
    assert acceleration._tune_glibc_malloc() == f"malloc defaults ({ALLOCATOR_ENV}=default)"


def test_reuse_freed_memory_is_done_once(monkeypatch):
    calls = []
    monkeypatch.setattr(acceleration, "_allocator_report", None)
    monkeypatch.setattr(acceleration, "_tune_glibc_malloc", lambda: calls.append(1) or "report")
    optimize_for_inference(make_tiny_pipeline())
    assert acceleration.reuse_freed_memory() == "report" and calls == [1]
