"""`indi bench --compile`: eager vs ``torch.compile`` (acceleration.compile_network) on one image size.

Everything runs under the pipeline's ``torch.no_grad`` (a compiled network is specialised to its autograd mode), in
the network's fastest CPU memory format, with eager and compiled runs interleaved so that load on the machine hits
both alike. The first compiled call is timed on its own: that is the compile cost, paid once per process and shape
(the C++ kernels are cached on disk, so a later process compiles faster; ``cache_was_warm`` says which case this was).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from indi_pipeline.acceleration import compile_cache_dir, compile_network, optimize_for_inference


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


def compile_comparison(net, scheduler, size: int, steps: int, repeats: int, warmup: int, device: str) -> dict:
    """Forward and ``steps``-step restore at ``size`` x ``size``, eager vs compiled, plus compile time and agreement."""
    from benchmarks.timing import scalar_timestep, time_ms
    from indi_pipeline.metrics import psnr
    from indi_pipeline.pipeline_indi import InDIPipeline

    def pipeline(network):
        pipe = InDIPipeline(unet=copy.deepcopy(network), scheduler=copy.deepcopy(scheduler)).to(device)
        pipe.set_progress_bar_config(disable=True)
        return optimize_for_inference(pipe)

    eager, compiled = pipeline(net), pipeline(net)
    cache = compile_cache_dir()
    cache_was_warm = _has_files(cache)
    compile_network(compiled.unet)

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    x = image.to(device).contiguous(memory_format=torch.channels_last if device == "cpu" else torch.contiguous_format)
    timestep = scalar_timestep(device)

    def restore(pipe):
        return pipe(
            image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt"
        ).images

    with torch.no_grad():
        start = time.perf_counter()
        compiled.unet(x, timestep)  # the first call compiles
        if device == "cuda":
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        agreement = psnr(restore(compiled), restore(eager)).item()

    forward = time_ms(
        {"eager": lambda: eager.unet(x, timestep), "compiled": lambda: compiled.unet(x, timestep)},
        repeats,
        warmup,
        device,
        grad_mode=torch.no_grad,
    )
    restores = time_ms(
        {"eager": lambda: restore(eager), "compiled": lambda: restore(compiled)},
        repeats,
        warmup,
        device,
        grad_mode=torch.no_grad,
    )
    return {
        "size": size,
        "steps": steps,
        "compile_s": round(compile_s, 1),
        "cache_dir": str(cache),
        "cache_was_warm": cache_was_warm,
        "forward_eager_ms": round(forward["eager"]["median_ms"], 3),
        "forward_compiled_ms": round(forward["compiled"]["median_ms"], 3),
        "restore_eager_ms": round(restores["eager"]["median_ms"], 3),
        "restore_compiled_ms": round(restores["compiled"]["median_ms"], 3),
        "speedup": round(restores["eager"]["median_ms"] / restores["compiled"]["median_ms"], 3),
        "compiled_vs_eager_psnr_db": round(agreement, 1),
        "forward_runs_ms": {name: stats["runs_ms"] for name, stats in forward.items()},
        "restore_runs_ms": {name: stats["runs_ms"] for name, stats in restores.items()},
    }


def format_rows(row: dict, restore_target_ms: float | None = None) -> list[str]:
    """Markdown rows for the bench table."""
    size, steps = f"{row['size']}x{row['size']}", row["steps"]
    target = f" (target <= {restore_target_ms / 1000:.1f} s)" if restore_target_ms else ""
    warm = "warm" if row["cache_was_warm"] else "cold"
    return [
        "",
        "| torch.compile (inductor, frozen weights) | eager | compiled |",
        "|---|---:|---:|",
        f"| one forward, {size} | {row['forward_eager_ms']:,.1f} ms | {row['forward_compiled_ms']:,.1f} ms |",
        f"| restore, {steps} steps, {size}{target} | {row['restore_eager_ms']:,.0f} ms | "
        f"**{row['restore_compiled_ms']:,.0f} ms** ({row['speedup']:.2f}x) |",
        f"| compile time (first call, {warm} kernel cache) | | {row['compile_s']:,.1f} s |",
        f"| compiled vs eager restore, PSNR | | {row['compiled_vs_eager_psnr_db']:.1f} dB |",
    ]
