"""Making a loaded pipeline fast on its device: memory format on the CPU, and optional ``torch.compile``.

Measured by ``indi bench --compile`` (README, Performance): on 2 CPU cores oneDNN's convolutions are faster in
channels_last, and inductor with weight freezing fuses the per-pixel layer norms, FiLM, gates and residual adds that
eager mode runs as separate passes over memory. Compiling costs tens of seconds the first time (the C++ kernels are
then cached on disk), so it pays for many same-size forwards: batches of photos, tiles of a large photo, benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Where inductor keeps compiled kernels between processes. Its default (/tmp/torchinductor_<user>) is lost on reboot.
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_compile_cache() -> Path:
    base = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(base)) / "indi" / "torchinductor"


def compile_cache_dir() -> Path:
    """The kernel cache torch.compile uses: $TORCHINDUCTOR_CACHE_DIR if set, else ours (compile_network sets it)."""
    return Path(os.environ.get(COMPILE_CACHE_ENV) or default_compile_cache())


def compile_network(network: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
    """Compiles ``network`` in place for inference (``torch.compile``, static shapes) and returns it.

    On the CPU the weights are frozen into the graph, which lets oneDNN pre-pack the convolution weights once instead
    of every call (without freezing, a compiled forward was several times slower than eager here). Frozen weights
    must not change afterwards: compile a network for inference only. Each new input shape compiles again (up to
    torch._dynamo's cache limit, then eager), so tiles and same-size batches get the benefit. ``mode``: torch.compile's
    (e.g. ``"reduce-overhead"`` for CUDA graphs on a GPU); None is its default.
    """
    os.environ[COMPILE_CACHE_ENV] = str(compile_cache_dir())
    device = next(network.parameters()).device
    options = {"freezing": True} if device.type == "cpu" else {}
    network.eval()
    if mode is None:
        network.compile(dynamic=False, options=options)
    else:  # torch.compile takes a mode or options, not both
        network.compile(dynamic=False, mode=mode)
    return network


def optimize_for_inference(pipe, compile: bool = False):
    """Puts ``pipe``'s network in the fastest memory format for its device and optionally compiles it."""
    if pipe.device.type == "cpu":
        # oneDNN's convolutions are 1.4-1.55x faster in channels_last on 2 CPU cores (`indi bench`); same results
        # up to float rounding (~5e-7).
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        compile_network(pipe.unet)
    return pipe
