"""One table of this machine's speed, fp32 against bf16, for restoring and for training.

    python -m benchmarks.speed --model model_cards/indi-jpeg --json docs/measurements/perf/speed.json
    python -m benchmarks.speed --quick          # small sizes and few steps: a smoke run (what the test runs)

Measures, with ``--threads`` torch threads (default 2, the Space's and CI's core count), medians of interleaved runs:

* one forward of the network at each ``--sizes`` in fp32 and in bf16 autocast (channels_last, as
  ``optimize_for_inference`` runs it), and the bf16 output's PSNR against the fp32 output;
* a ``--steps``-step restore at ``--restore-size`` through InDIPipeline in both dtypes, against the same number of
  raw forwards: the pipeline's overhead;
* a tiled restore of a ``--tiled-size`` photo (``--tiled-steps`` steps) in a child process: time and peak RSS;
* training images/s of ``train_indi`` (``--synthetic_data``: one batch kept in memory, so the loader does not count)
  at ``--train-resolution`` px, batch ``--train-batch``, fp32 against bf16;
* the network's FLOPs per forward (torch's FlopCounterMode: 2 per multiply-add of convolutions and matmuls) and the
  achieved GFLOP/s against this machine's *attainable* peak, estimated as the best GFLOP/s of a large square matmul
  in the same dtype and thread count (the fastest dense kernel oneDNN/MKL has here: a practical roofline top, not
  the vendor's theoretical number, which needs the clock under load and the microarchitecture's units).

Prints a Markdown table and writes the numbers as JSON. Speed targets are checked here, not in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.bench_tiling import CHECKOUT, large_restore
from benchmarks.models import count_parameters, load_network
from benchmarks.timing import scalar_timestep, time_ms, write_results
from indi_pipeline.acceleration import DTYPE_ENV, optimize_for_inference, reuse_freed_memory
from indi_pipeline.machine import cpu_has_native_bf16, cpu_model, load_average, machine_info, threads_text

DTYPES = {"fp32": None, "bf16": torch.bfloat16}
# The targets on a 2-core CPU with native bf16 (docs/performance.md says how far each is met).
TARGETS = {"restore_10_steps_512_bf16_s": 0.4, "overhead_ratio": 1.05, "peak_fraction": 0.5, "training_speedup": 1.4}


def _autocast(dtype: torch.dtype | None):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def network_flops(net: torch.nn.Module, size: int) -> int:
    """FLOPs of one forward at size x size (FlopCounterMode counts 2 per multiply-add of convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(x, scalar_timestep("cpu"))
    return int(counter.get_total_flops())


def matmul_peak_gflops(dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best GFLOP/s of a size x size matmul in ``dtype``: the attainable peak of this machine's dense kernels."""
    a = torch.rand(size, size).to(dtype)
    b = torch.rand(size, size).to(dtype)
    stats = time_ms({"mm": lambda: torch.mm(a, b)}, repeats, 1)["mm"]
    return 2 * size**3 / (stats["min_ms"] / 1000) / 1e9


def time_forwards(net, sizes, repeats, warmup) -> list[dict]:
    """One forward per size in fp32 and bf16 autocast (channels_last), interleaved, and their agreement."""
    from indi_pipeline.metrics import psnr

    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    timestep = scalar_timestep("cpu")
    rows = []
    for size in sizes:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=torch.channels_last)

        def run(dtype, x=x):
            with _autocast(dtype):
                return net_cl(x, timestep).sample

        stats = time_ms({name: (lambda d=dtype: run(d)) for name, dtype in DTYPES.items()}, repeats, warmup)
        with torch.inference_mode():
            agreement = psnr(run(torch.bfloat16).float().clamp(0, 1), run(None).clamp(0, 1)).item()
        rows.append(
            {
                "size": size,
                **{f"{name}_ms": stats[name]["median_ms"] for name in DTYPES},
                "speedup": stats["fp32"]["median_ms"] / stats["bf16"]["median_ms"],
                "bf16_vs_fp32_psnr_db": agreement,
            }
        )
    return rows


def time_restores(net, scheduler, size, steps, repeats, warmup) -> dict:
    """A steps-step restore through the pipeline in each dtype against the same number of raw forwards."""
    from indi_pipeline.pipeline_indi import InDIPipeline

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    result = {"size": size, "steps": steps}
    for name in DTYPES:
        pipe = InDIPipeline(unet=copy.deepcopy(net), scheduler=copy.deepcopy(scheduler))
        pipe.set_progress_bar_config(disable=True)
        optimize_for_inference(pipe, dtype=name)
        x = image.contiguous(memory_format=torch.channels_last)
        timestep = scalar_timestep("cpu")

        def restore(pipe=pipe):
            pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt")

        def raw(pipe=pipe, x=x, timestep=timestep):
            for _ in range(steps):
                pipe._predict_clean(x, timestep)

        stats = time_ms({"restore": restore, "raw": raw}, repeats, warmup)
        result[name] = {
            "restore_s": stats["restore"]["median_ms"] / 1000,
            "raw_forwards_s": stats["raw"]["median_ms"] / 1000,
            "overhead_ratio": stats["restore"]["median_ms"] / stats["raw"]["median_ms"],
        }
    return result


def time_tiled(model, width, height, steps, tile_size, overlap) -> dict:
    """The tiled restore in a child process per dtype (its peak RSS is its own)."""
    result = {}
    previous = os.environ.get(DTYPE_ENV)
    try:
        for name in DTYPES:
            os.environ[DTYPE_ENV] = name  # the child's optimize_for_inference reads it
            result[name] = large_restore(model, height, width, steps, tile_size, overlap)
    finally:
        if previous is None:
            os.environ.pop(DTYPE_ENV, None)
        else:
            os.environ[DTYPE_ENV] = previous
    return result


def time_training(resolution, batch, steps, threads) -> dict:
    """train_indi's images/s on one in-memory batch (--synthetic_data), fp32 against bf16, same seed; each run in a
    process of its own (accelerate's state, mixed precision included, is fixed once per process)."""
    result = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    for precision in ("no", "bf16"):
        with tempfile.TemporaryDirectory() as out:
            command = [
                sys.executable, "-m", "train.train_indi", "--task", "denoise", "--synthetic_data", "--output_dir", out,
                "--resolution", str(resolution), "--train_batch_size", str(batch), "--max_train_steps", str(steps),
                "--logging_steps", str(steps), "--checkpointing_steps", str(10 * steps), "--report_to", "none",
                "--seed", "0", "--mixed_precision", precision,
            ]  # fmt: skip
            run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=CHECKOUT, check=False)
            if run.returncode != 0:
                raise RuntimeError(f"training ({precision}) failed:\n{run.stderr[-2000:]}")
            info = json.loads((Path(out) / "train_info.json").read_text())
        result["fp32" if precision == "no" else "bf16"] = {
            "images_per_second": info["images_per_second_median"],
            "channels_last": info["args"]["channels_last"],
            "loss": info["history"][-1]["loss"] if info["history"] else None,
        }
    result["speedup"] = result["bf16"]["images_per_second"] / result["fp32"]["images_per_second"]
    return result


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    allocator = reuse_freed_memory()
    net, scheduler, description = load_network(args.model)
    net = net.eval()
    results = {
        "machine": {**machine_info("cpu"), "allocator": allocator, "native_bf16": cpu_has_native_bf16()},
        "model": {"source": description, "parameters": count_parameters(net)},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }
    print(f"{cpu_model()}, {threads_text(args.threads)}: forwards ...", flush=True)
    results["forward"] = time_forwards(net, args.sizes, args.repeats, args.warmup)
    print("restores ...", flush=True)
    results["restore"] = time_restores(net, scheduler, args.restore_size, args.steps, args.repeats, args.warmup)
    if args.tiled_size:
        print(f"tiled {args.tiled_size} ...", flush=True)
        width, height = (int(v) for v in args.tiled_size.lower().split("x"))
        results["tiled"] = time_tiled(args.model, width, height, args.tiled_steps, args.tile_size, args.tile_overlap)
    if args.train_steps:
        print("training ...", flush=True)
        results["training"] = time_training(args.train_resolution, args.train_batch, args.train_steps, args.threads)
    print("FLOPs and the matmul peak ...", flush=True)
    flops = network_flops(net, args.flops_size)
    peaks = {
        name: matmul_peak_gflops(dtype or torch.float32, args.peak_size, args.repeats) for name, dtype in DTYPES.items()
    }
    row = next((r for r in results["forward"] if r["size"] == args.flops_size), None)
    achieved = {name: flops / (row[f"{name}_ms"] / 1000) / 1e9 for name in DTYPES} if row else None
    results["throughput"] = {
        "size": args.flops_size,
        "gflop_per_forward": flops / 1e9,
        "matmul_peak_gflops": peaks,
        "achieved_gflops": achieved,
        "fraction_of_peak": {name: achieved[name] / peaks[name] for name in DTYPES} if achieved else None,
    }
    results["machine"]["load_average_end"] = load_average()
    return results


def format_table(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"Machine: {machine['cpu']} ({'native bf16' if machine['native_bf16'] else 'no native bf16'}), "
        f"{machine['cpu_count']} cores, torch {machine['torch']} ({threads_text(machine['torch_threads'])}); "
        f"load average {machine['load_average_start'][0]:.2f} at the start, {machine['load_average_end'][0]:.2f} "
        f"at the end. Model: {results['model']['source']}, {results['model']['parameters']:,} parameters.",
        "",
        "| measurement | fp32 | bf16 | bf16 speed-up |",
        "|---|---:|---:|---:|",
    ]
    for row in results["forward"]:
        lines.append(
            f"| one forward, {row['size']}² (bf16 vs fp32 output: {row['bf16_vs_fp32_psnr_db']:.1f} dB) | "
            f"{row['fp32_ms']:.1f} ms | {row['bf16_ms']:.1f} ms | {row['speedup']:.2f}x |"
        )
    restore = results["restore"]
    fp32, bf16 = restore["fp32"], restore["bf16"]
    lines += [
        f"| {restore['steps']}-step restore, {restore['size']}² | {fp32['restore_s']:.3f} s | {bf16['restore_s']:.3f} s "
        f"| {fp32['restore_s'] / bf16['restore_s']:.2f}x |",
        f"| its overhead over {restore['steps']} raw forwards (target ≤ {TARGETS['overhead_ratio']}) | "
        f"{fp32['overhead_ratio']:.3f} | {bf16['overhead_ratio']:.3f} | |",
    ]
    tiled = results.get("tiled")
    if tiled:
        a, b = tiled["fp32"], tiled["bf16"]
        lines += [
            f"| tiled {a['width']}x{a['height']}, {a['steps']} step(s), {a['tile_size']} px tiles: time | "
            f"{a['seconds']:.1f} s | {b['seconds']:.1f} s | {a['seconds'] / b['seconds']:.2f}x |",
            f"| the same: peak RSS | {a['peak_rss_mb']:,} MB | {b['peak_rss_mb']:,} MB | |",
        ]
    training = results.get("training")
    if training:
        s = results["settings"]
        lines.append(
            f"| training images/s, {s['train_resolution']} px, batch {s['train_batch']} (channels_last: "
            f"{training['fp32']['channels_last']} / {training['bf16']['channels_last']}) | "
            f"{training['fp32']['images_per_second']:.1f} | {training['bf16']['images_per_second']:.1f} | "
            f"{training['speedup']:.2f}x |"
        )
    throughput = results["throughput"]
    peaks, achieved = throughput["matmul_peak_gflops"], throughput["achieved_gflops"]
    lines.append(
        f"| matmul peak ({results['settings']['peak_size']}², attainable) | {peaks['fp32']:.0f} GFLOP/s | "
        f"{peaks['bf16']:.0f} GFLOP/s | {peaks['bf16'] / peaks['fp32']:.2f}x |"
    )
    if achieved:
        fraction = throughput["fraction_of_peak"]
        lines.append(
            f"| network at {throughput['size']}² ({throughput['gflop_per_forward']:.1f} GFLOP/forward): achieved | "
            f"{achieved['fp32']:.0f} GFLOP/s ({100 * fraction['fp32']:.0f} % of peak) | "
            f"{achieved['bf16']:.0f} GFLOP/s ({100 * fraction['bf16']:.0f} % of peak) | |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="pipeline folder, Hub id or InDINet(...) spec (default: the zoo config, random weights)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 512, 1024], help="forward sizes (default: 256 512 1024)"
    )
    parser.add_argument("--restore-size", type=int, default=512, help="size of the restore row (default: 512)")
    parser.add_argument("--steps", type=int, default=10, help="steps of the restore row (default: 10)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per measurement, median reported (default: 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    parser.add_argument(
        "--tiled-size", default="4000x3000", help="WIDTHxHEIGHT of the tiled restore; '' skips it (default: 4000x3000)"
    )
    parser.add_argument("--tiled-steps", type=int, default=1, help="steps of the tiled restore (default: 1)")
    parser.add_argument("--tile-size", type=int, default=512, help="tile size (default: 512)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="tile overlap (default: 64)")
    parser.add_argument("--train-resolution", type=int, default=128, help="training crop size (default: 128)")
    parser.add_argument("--train-batch", type=int, default=16, help="training batch (default: 16)")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps per dtype; 0 skips (default: 30)")
    parser.add_argument("--flops-size", type=int, default=512, help="forward size of the FLOP count (default: 512)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size of the peak estimate (default: 2048)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps: checks that everything runs")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the results here")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.restore_size, args.steps, args.repeats, args.warmup = [64], 64, 2, 1, 0
        args.tiled_size, args.tiled_steps, args.tile_size, args.tile_overlap = "160x96", 1, 64, 16
        args.train_resolution, args.train_batch, args.train_steps = 32, 2, 2
        args.flops_size, args.peak_size = 64, 256
    if args.threads < 1 or args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        raise SystemExit("error: --threads, --repeats and --steps must be >= 1, --warmup >= 0")
    results = run(args)
    print()
    print(format_table(results))
    if args.json:
        write_results(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
