"""Helpers shared by the benchmarks: interleaved wall-clock medians, one network forward, writing the JSON."""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def synchronize(device: str | torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so that a wall-clock time covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int, device: str = "cpu", grad_mode=torch.inference_mode
) -> dict:
    """Wall time of each ``fns[name]()`` in milliseconds: median, min and all runs, after ``warmup`` untimed calls.

    The functions are timed interleaved (a, b, a, b, ...) rather than one after the other, so that a change of
    load on the machine during the measurement hits all of them alike and their ratio stays meaningful.
    ``grad_mode``: the autograd context (a compiled network is timed under the pipeline's ``torch.no_grad``, since
    a change of mode would compile it again).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    with grad_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        synchronize(device)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                synchronize(device)
                times[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: {"median_ms": statistics.median(runs), "min_ms": min(runs), "runs_ms": [round(t, 3) for t in runs]}
        for name, runs in times.items()
    }


def scalar_timestep(device: str) -> torch.Tensor:
    # A scalar, as the pipeline passes it (one t for the whole batch: the network's faster path).
    return torch.full((), 500.0, device=device)


def time_forward(net, size: int, repeats: int, warmup: int, device: str) -> dict:
    """One forward at ``size`` x ``size``: ``{"contiguous": stats, "channels_last": stats}`` (model and input both)."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    timestep = scalar_timestep(device)
    return time_ms(
        {"contiguous": lambda: net(x, timestep), "channels_last": lambda: net_cl(x_cl, timestep)},
        repeats,
        warmup,
        device,
    )


def write_results(results: dict, path: str | Path) -> Path:
    """Writes a benchmark's results as indented JSON (creating the folder) and says where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    return path
