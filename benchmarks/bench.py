"""``indi bench``: how fast is the network, and how much does the pipeline add around it?

Measures, under ``torch.inference_mode`` after warm-up, the median of ``--repeats`` runs of

* one forward of the network at each ``--sizes`` (square, batch 1), in the default (contiguous) memory format and
  in ``channels_last`` (model and input both), and says which is faster;
* a full ``--steps``-step restore through :class:`InDIPipeline` (``output_type="pt"``) at ``--compare-size`` against
  ``--steps`` raw forwards of the same network on the same input: the ratio is the pipeline's overhead
  (target <= 1.05);
* optionally (``--compare-unet``) one forward of a diffusers ``UNet2DModel`` of about 2.5 M parameters at
  ``--compare-size``;
* optionally (``--compile``) eager vs ``torch.compile`` forward and restore at ``--compare-size``, and the compile
  time (``bench_compile.py``); (``--tiled``) a large tiled restore's time and peak memory, and seam PSNR.

Prints a Markdown table (machine, parameters, times) and writes the same numbers as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from collections.abc import Callable

import torch

from benchmarks.models import count_parameters, load_network, null_network
from benchmarks.timing import time_forward, time_ms, write_results
from indi_pipeline.acceleration import ALLOCATOR_ENV, reuse_freed_memory
from indi_pipeline.machine import cpu_model, load_average, machine_info, threads_text  # noqa: F401  (re-exported)

DESCRIPTION = (
    "Time the InDI network (forward at several sizes, contiguous vs channels_last), the pipeline's overhead over "
    "raw forwards, and optionally a diffusers UNet2DModel of about 2.5M parameters. Prints a Markdown table and "
    "optionally writes JSON."
)
OVERHEAD_TARGET = 1.05
CPU_RESTORE_TARGET_MS = 2000.0  # 10 steps at 512x512 on 2 CPU cores (issue 6)

# A diffusers UNet2DModel of ~2.5 M parameters (2,537,187): the comparison row of `--compare-unet`.
UNET_COMPARISON_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=32,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH_OR_REPO_ID",
        help="pipeline folder or Hub repo id whose network to time, or a configuration such as "
        "'InDINet(width=48, unshuffle=4)' (random weights); default: a randomly initialised InDINet() with the "
        "default (zoo) config",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[256, 512, 1024],
        help="square input sizes in px (default: 256 512 1024)",
    )
    parser.add_argument("--steps", type=int, default=10, help="steps of the pipeline-overhead restore (default: 10)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per measurement; the median is reported (default: 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement (default: 1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice, usually the cores)"
    )
    parser.add_argument(
        "--compare-size",
        type=int,
        default=512,
        help="image size of the pipeline-overhead and UNet2DModel rows (default: 512)",
    )
    parser.add_argument(
        "--compare-unet", action="store_true", help="also time a diffusers UNet2DModel of ~2.5M parameters"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default: cpu)")
    parser.add_argument(
        "--tiled", action="store_true", help="also time a large tiled restore (peak memory) and measure seam PSNR"
    )
    parser.add_argument(
        "--tiled-size", default="4000x3000", help="WIDTHxHEIGHT of the tiled restore (default: 4000x3000)"
    )
    parser.add_argument("--seam-size", type=int, default=1024, help="image size of the seam check (default: 1024)")
    parser.add_argument("--tile-size", type=int, default=512, help="tile size for --tiled (default: 512)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="tile overlap for --tiled (default: 64)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the network and the restore at --compare-size with torch.compile (eager vs compiled, compile "
        "time, agreement)",
    )
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave the C library's malloc settings as they are (by default the bench, like `indi restore`, lets the "
        "process reuse freed memory: acceleration.reuse_freed_memory)",
    )
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the results to this JSON file")


# -------------------------------------------------------------------------------------------------------------- run
def run_bench(
    model: str | None = None,
    sizes: tuple[int, ...] = (256, 512, 1024),
    steps: int = 10,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    compare_size: int = 512,
    compare_unet: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
) -> dict:
    """Runs the benchmark and returns the results as a JSON-ready dict (see the module docstring)."""
    log = log or (lambda message: None)
    with _threads(threads):
        return _run_bench(model, sizes, steps, repeats, warmup, compare_size, compare_unet, device, log)


@contextlib.contextmanager
def _threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` (None: unchanged) for the duration."""
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(model, sizes, steps, repeats, warmup, compare_size, compare_unet, device, log) -> dict:
    from indi_pipeline.pipeline_indi import InDIPipeline

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("indi: error: --device cuda was asked for, but torch sees no CUDA GPU")

    net, scheduler, description = load_network(model)
    net = net.to(device).eval()
    # As `indi restore` and the Space run (acceleration.optimize_for_inference); --default-allocator opts out.
    allocator = reuse_freed_memory() if device == "cpu" else None
    multiple = int(getattr(net, "input_multiple", 1))
    for size in (*sizes, compare_size):
        if size % multiple:
            raise SystemExit(f"indi: error: size {size} is not a multiple of the network's input multiple {multiple}")

    results = {
        "machine": {**machine_info(device), "allocator": allocator},
        "model": {
            "source": description,
            "class": type(net).__name__,
            "parameters": count_parameters(net),
            "config": {k: v for k, v in dict(net.config).items() if not k.startswith("_")},
        },
        "settings": {
            "sizes": list(sizes),
            "steps": steps,
            "repeats": repeats,
            "warmup": warmup,
            "compare_size": compare_size,
            "batch": 1,
            "inference_mode": True,
        },
        "forward": [],
    }

    # 1. Forward time per size, both memory formats.
    for size in sizes:
        log(f"forward {size}x{size} ...")
        timings = time_forward(net, size, repeats, warmup, device)
        contiguous, channels_last = timings["contiguous"], timings["channels_last"]
        best = "channels_last" if channels_last["median_ms"] < contiguous["median_ms"] else "contiguous"
        results["forward"].append(
            {
                "size": size,
                "contiguous_ms": round(contiguous["median_ms"], 3),
                "channels_last_ms": round(channels_last["median_ms"], 3),
                "best_memory_format": best,
                "ms": round(min(contiguous["median_ms"], channels_last["median_ms"]), 3),
                "contiguous_runs_ms": contiguous["runs_ms"],
                "channels_last_runs_ms": channels_last["runs_ms"],
            }
        )

    # 2. Pipeline overhead: a full restore vs the same number of raw forwards on the same input, with the network
    #    in the faster memory format at this size. The pipeline gets the image as a user passes it (contiguous);
    #    the raw forwards get the input in the network's format.
    same_size = [row for row in results["forward"] if row["size"] == compare_size]
    if same_size:
        memory_format = same_size[0]["best_memory_format"]
    else:
        timings = time_forward(net, compare_size, max(1, min(repeats, 3)), warmup, device)
        faster = timings["channels_last"]["median_ms"] < timings["contiguous"]["median_ms"]
        memory_format = "channels_last" if faster else "contiguous"
    torch_format = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    log(f"pipeline {steps} steps at {compare_size}x{compare_size} ({memory_format}) ...")
    net_for_pipe = copy.deepcopy(net).to(memory_format=torch_format)
    pipe = InDIPipeline(unet=net_for_pipe, scheduler=copy.deepcopy(scheduler))
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, compare_size, compare_size, generator=torch.Generator().manual_seed(1))
    x = image.to(device).contiguous(memory_format=torch_format)
    timesteps = [torch.full((), 1000.0 * (1 - i / steps), device=device) for i in range(steps)]

    def restore():
        pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt")

    def raw_forwards():
        for timestep in timesteps:
            net_for_pipe(x, timestep)

    # The same restore around a network that costs nothing: the pipeline's own time, which (unlike the ratio of
    # two long runs) stays readable when other work on the machine makes the runs noisy.
    null_pipe = InDIPipeline(unet=null_network(net), scheduler=copy.deepcopy(scheduler))
    null_pipe.set_progress_bar_config(disable=True)

    def restore_null():
        null_pipe(image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt")

    timings = time_ms({"pipeline": restore, "raw": raw_forwards}, repeats, warmup, device)
    pipeline, raw = timings["pipeline"], timings["raw"]
    alone = time_ms({"null": restore_null}, max(repeats, 5), max(warmup, 1), device)["null"]
    ratio = pipeline["median_ms"] / raw["median_ms"]
    results["pipeline_overhead"] = {
        "size": compare_size,
        "steps": steps,
        "pipeline_ms": round(pipeline["median_ms"], 3),
        "raw_forwards_ms": round(raw["median_ms"], 3),
        "ratio": round(ratio, 4),
        "ratio_of_minimums": round(pipeline["min_ms"] / raw["min_ms"], 4),
        "pipeline_alone_ms": round(alone["median_ms"], 3),
        "pipeline_alone_fraction": round(alone["median_ms"] / raw["median_ms"], 4),
        "target": OVERHEAD_TARGET,
        "within_target": ratio <= OVERHEAD_TARGET,
        "pipeline_runs_ms": pipeline["runs_ms"],
        "raw_forwards_runs_ms": raw["runs_ms"],
        "memory_format": memory_format,
    }

    # 3. Optional: a diffusers UNet2DModel of ~2.5 M parameters at the same size.
    results["unet2d"] = None
    if compare_unet:
        from diffusers import UNet2DModel

        log(f"UNet2DModel at {compare_size}x{compare_size} ...")
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=compare_size, **UNET_COMPARISON_CONFIG).to(device).eval()
        unet_repeats = max(1, min(repeats, 3))  # it is slow on the CPU; 3 runs are enough for a comparison
        timings = time_forward(unet, compare_size, unet_repeats, min(warmup, 1), device)
        contiguous, channels_last = timings["contiguous"], timings["channels_last"]
        best_ms = min(contiguous["median_ms"], channels_last["median_ms"])
        # Compare best format against best format: the forward row at this size if there is one.
        indi_ms = same_size[0]["ms"] if same_size else raw["median_ms"] / steps
        results["unet2d"] = {
            "size": compare_size,
            "parameters": count_parameters(unet),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_COMPARISON_CONFIG.items()},
            "contiguous_ms": round(contiguous["median_ms"], 3),
            "channels_last_ms": round(channels_last["median_ms"], 3),
            "ms": round(best_ms, 3),
            "repeats": unet_repeats,
            "times_slower_than_indinet": round(best_ms / indi_ms, 2),
        }
    results["machine"]["load_average_end"] = load_average()
    return results


# ------------------------------------------------------------------------------------------------------------ report
def _fmt_ms(ms: float) -> str:
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def format_table(results: dict) -> str:
    """The results as Markdown (pasteable into the README)."""
    machine, model = results["machine"], results["model"]
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    lines = [
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']} "
        f"({threads_text(machine['torch_threads'])}), device {machine['device']}"
        + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        + (f", load average (1 min) {start[0]:.2f} at the start, {end[0]:.2f} at the end" if start and end else "")
        + (f"; {machine['allocator']}" if machine.get("allocator") else ""),
        f"Model: {model['source']}, {model['parameters']:,} parameters. "
        f"Median of {results['settings']['repeats']} runs after {results['settings']['warmup']} warm-up, batch 1, "
        "torch.inference_mode.",
        "",
        "| measurement | contiguous | channels_last | faster |",
        "|---|---:|---:|---|",
    ]
    for row in results["forward"]:
        other = max(row["contiguous_ms"], row["channels_last_ms"])
        lines.append(
            f"| one forward, {row['size']}x{row['size']} | {_fmt_ms(row['contiguous_ms'])} ms | "
            f"{_fmt_ms(row['channels_last_ms'])} ms | {row['best_memory_format']} ({other / row['ms']:.2f}x) |"
        )
    unet = results.get("unet2d")
    if unet:
        lines.append(
            f"| diffusers UNet2DModel ({unet['parameters'] / 1e6:.2f} M params), one forward, "
            f"{unet['size']}x{unet['size']} | {_fmt_ms(unet['contiguous_ms'])} ms | "
            f"{_fmt_ms(unet['channels_last_ms'])} ms | {unet['times_slower_than_indinet']:.1f}x slower than InDINet |"
        )
    over = results["pipeline_overhead"]
    lines += [
        "",
        "| pipeline overhead | time |",
        "|---|---:|",
        f'| InDIPipeline, {over["steps"]} steps, {over["size"]}x{over["size"]}, output_type="pt", '
        f"network {over['memory_format']} | "
        f"{_fmt_ms(over['pipeline_ms'])} ms |",
        f"| {over['steps']} raw network forwards, same input | {_fmt_ms(over['raw_forwards_ms'])} ms |",
        f"| ratio (target <= {over['target']:.2f}) | **{over['ratio']:.3f}** |",
        f"| the same restore around a no-op network (the pipeline's own time) | {_fmt_ms(over['pipeline_alone_ms'])} ms "
        f"(= {100 * over['pipeline_alone_fraction']:.1f} % of the raw forwards) |",
    ]
    compiled = results.get("compiled")
    if compiled:
        from benchmarks.bench_compile import format_rows

        on_target = compiled["size"] == 512 and compiled["steps"] == 10 and machine["device"] == "cpu"
        lines += format_rows(compiled, CPU_RESTORE_TARGET_MS if on_target else None)
    tiled = results.get("tiled")
    if tiled:
        large, seams = tiled["large"], tiled["seams"]
        lines += [
            "",
            "| tiled inference | value |",
            "|---|---:|",
            f"| {large['width']}x{large['height']}, {large['steps']} steps, {large['tile_size']} px tiles "
            f"({large['tile_overlap']} px overlap): time | {large['seconds']:,.1f} s |",
            f"| the same: peak resident memory of the process | {large['peak_rss_mb']:,} MB |",
            f"| {seams['size']}x{seams['size']}, {seams['steps']} steps: tiled vs untiled PSNR | {seams['psnr_db']:.1f} dB |",
        ]
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"indi: error: --{name} must be >= 1")
    if args.warmup < 0 or any(size < 1 for size in args.sizes) or args.compare_size < 1:
        raise SystemExit("indi: error: --warmup must be >= 0 and sizes >= 1")
    if args.threads is not None and args.threads < 1:
        raise SystemExit("indi: error: --threads must be >= 1")
    if args.default_allocator:
        os.environ[ALLOCATOR_ENV] = "default"  # the tiled restore's child process inherits it
    if args.tiled:
        try:
            tiled_width, tiled_height = (int(v) for v in args.tiled_size.lower().split("x"))
        except ValueError:
            raise SystemExit(f"indi: error: --tiled-size must be WIDTHxHEIGHT, got {args.tiled_size!r}") from None
    results = run_bench(
        model=args.model,
        sizes=tuple(args.sizes),
        steps=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        compare_size=args.compare_size,
        compare_unet=args.compare_unet,
        device=args.device,
        log=lambda message: print(message, flush=True),
    )
    if args.compile:
        from benchmarks.bench_compile import compile_comparison

        print(f"torch.compile at {args.compare_size}x{args.compare_size} ...", flush=True)
        net, scheduler, _ = load_network(args.model)
        with _threads(args.threads):
            results["compiled"] = compile_comparison(
                net.eval(), scheduler, args.compare_size, args.steps, args.repeats, args.warmup, args.device
            )
    if args.tiled:
        from benchmarks.bench_tiling import large_restore, seam_psnr

        print("tiled restore and seam check ...", flush=True)
        results["tiled"] = {
            "large": large_restore(
                args.model, tiled_height, tiled_width, args.steps, args.tile_size, args.tile_overlap
            ),
            "seams": seam_psnr(args.model, args.seam_size, args.steps, args.tile_size, args.tile_overlap),
        }
    print()
    print(format_table(results))
    if args.json:
        write_results(results, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.bench`` (and ``indi bench``, which runs it in the checkout)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=DESCRIPTION)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
