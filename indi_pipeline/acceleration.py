"""Making a loaded pipeline fast on its device: memory format and memory reuse on the CPU, optional ``torch.compile``.

Measured by ``indi bench --compile`` (docs/performance.md): on 2 CPU cores oneDNN's convolutions are faster in
channels_last, and inductor with weight freezing fuses the per-pixel layer norms, FiLM, gates and residual adds that
eager mode runs as separate passes over memory. Compiling costs tens of seconds the first time (the C++ kernels are
then cached on disk), so it pays for many same-size forwards: batches of photos, tiles of a large photo, benchmarks.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

import torch

from .machine import cpu_has_native_bf16

# The dtype of the network's forwards: "auto" (bf16 where the hardware computes it natively), "fp32" or "bf16".
DTYPE_CHOICES = ("auto", "fp32", "bf16")
DTYPE_ENV = "INDI_DTYPE"

# Where inductor keeps compiled kernels between processes. Its default (/tmp/torchinductor_<user>) is lost on reboot.
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_compile_cache() -> Path:
    base = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(base)) / "indi" / "torchinductor"


def compile_cache_dir() -> Path:
    """The kernel cache torch.compile uses: $TORCHINDUCTOR_CACHE_DIR if set, else ours (compile_network sets it)."""
    return Path(os.environ.get(COMPILE_CACHE_ENV) or default_compile_cache())


def use_compile_cache() -> Path:
    """Points inductor at our kernel cache (compile_cache_dir) for this process; returns it."""
    cache = compile_cache_dir()
    os.environ[COMPILE_CACHE_ENV] = str(cache)
    return cache


def compile_network(network: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
    """Compiles ``network`` in place for inference (``torch.compile``, static shapes) and returns it.

    On the CPU the weights are frozen into the graph, which lets oneDNN pre-pack the convolution weights once instead
    of every call (without freezing, a compiled forward was several times slower than eager here). Frozen weights
    must not change afterwards: compile a network for inference only. Each new input shape compiles again (up to
    torch._dynamo's cache limit, then eager), so tiles and same-size batches get the benefit. ``mode``: torch.compile's
    (e.g. ``"reduce-overhead"`` for CUDA graphs on a GPU); None is its default.
    """
    use_compile_cache()
    device = next(network.parameters()).device
    options = {"freezing": True} if device.type == "cpu" else {}
    network.eval()
    if mode is None:
        network.compile(dynamic=False, options=options)
    else:  # torch.compile takes a mode or options, not both
        network.compile(dynamic=False, mode=mode)
    return network


# glibc malloc settings (mallopt(3)): the mmap threshold's largest allowed value on 64-bit, and a trim threshold large
# enough to keep a forward's feature maps (about 0.5 GB at 512x512) for the next one.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2**30
ALLOCATOR_ENV = "INDI_CPU_ALLOCATOR"  # "default" leaves malloc as it is
_allocator_report: str | None = None


def reuse_freed_memory() -> str:
    """Lets glibc's malloc keep freed feature maps for the next forward instead of handing them back to the kernel.

    With glibc's defaults every feature map above 128 KiB-32 MiB (the threshold adapts) is mapped fresh and unmapped
    when freed, so each forward page-faults (and the kernel zeroes) its memory again: about 30,000 page faults and a
    fifth of the time of a 512x512 forward on 2 CPU cores, and about 10 % of CPU training (docs/performance.md).
    Fixing the mmap threshold at its maximum (32 MiB) and the trim threshold at 1 GiB removes most of them, for a few
    % more resident memory. It is process-wide, so it is done once, and not at all where the user chose the allocator
    (``MALLOC_*_`` variables, a preloaded jemalloc/tcmalloc, ``INDI_CPU_ALLOCATOR=default``) or where the C library
    is not glibc. Returns what was done, in words (``indi bench`` records it).
    """
    global _allocator_report
    if _allocator_report is None:
        _allocator_report = _tune_glibc_malloc()
    return _allocator_report


def _tune_glibc_malloc() -> str:
    if os.environ.get(ALLOCATOR_ENV, "").lower() == "default":
        return f"malloc defaults ({ALLOCATOR_ENV}=default)"
    chosen = [name for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if name in os.environ]
    preload = os.environ.get("LD_PRELOAD", "")
    if chosen or "malloc" in preload:
        return "malloc as configured by the user (" + (", ".join(chosen) or f"LD_PRELOAD={preload}") + ")"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "malloc defaults (not glibc)"
    libc = ctypes.CDLL("libc.so.6")
    if not (
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    ):
        return "malloc defaults (mallopt refused the settings)"
    return f"glibc malloc: mmap threshold {MMAP_THRESHOLD_BYTES >> 20} MiB, trim threshold {TRIM_THRESHOLD_BYTES >> 20} MiB"


def resolve_dtype(choice: str | None, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of the network's forwards for ``choice`` ("auto", "fp32", "bf16"; None: $INDI_DTYPE, else
    "auto") on ``device``: torch.bfloat16, or None for float32.

    "auto" picks bf16 where the hardware computes it natively: a CPU with AVX-512 BF16 or AMX
    (machine.cpu_has_native_bf16, read from /proc/cpuinfo), or a CUDA GPU that supports bf16 (Ampere and newer);
    elsewhere fp32, since emulated bf16 is slower than fp32. The walk's own arithmetic stays float32 either way.
    """
    source = "dtype" if choice is not None else f"${DTYPE_ENV}"
    text = choice if choice is not None else os.environ.get(DTYPE_ENV, "auto")
    choice = text.strip().lower()
    if choice not in DTYPE_CHOICES:
        raise ValueError(f"{source} must be one of {', '.join(DTYPE_CHOICES)}, got {text!r}")
    if choice != "auto":
        return torch.bfloat16 if choice == "bf16" else None
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def dtype_name(dtype: torch.dtype | None) -> str:
    """'bf16' or 'fp32': how reports and benchmarks name a resolved autocast dtype."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def optimize_for_inference(pipe, compile: bool = False, dtype: str | None = None):
    """Puts ``pipe``'s network in the fastest memory format for its device, chooses the dtype of its forwards
    (`resolve_dtype`: bf16 autocast where the hardware has it), lets the process reuse freed memory on the CPU
    (`reuse_freed_memory`), and optionally compiles the network."""
    pipe.autocast_dtype = resolve_dtype(dtype, pipe.device)
    if pipe.device.type == "cpu":
        reuse_freed_memory()
        # oneDNN's convolutions are 1.4-1.55x faster in channels_last on 2 CPU cores (`indi bench`); same results
        # up to float rounding (~5e-7).
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        compile_network(pipe.unet)
    return pipe
