#!/usr/bin/env python
"""GPU inference figures for README's Performance section: 10-step restore of a 1024x1024 image, eager fp32 vs
bf16 + channels_last (and torch.compile when asked), in ms and megapixels/s, plus the output difference in PSNR.

    python -m benchmarks.gpu_bench --model model_cards/indi-denoise --json gpu_inference.json [--compile]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from indi_pipeline import InDIPipeline
from indi_pipeline.acceleration import compile_network
from indi_pipeline.metrics import psnr


def timed(pipe, image, steps, repeats, device):
    def run():
        return pipe(
            image, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt", tile_size=0
        ).images

    run()  # warm-up (cuDNN autotuning, allocations)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


def main(argv=None):
    parser = argparse.ArgumentParser(description="GPU inference benchmark of an InDI repo.")
    parser.add_argument("--model", required=True, help="Model repo folder.")
    parser.add_argument("--size", type=int, default=1024, help="Square image size.")
    parser.add_argument("--steps", type=int, default=10, help="InDI steps.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats (median).")
    parser.add_argument("--compile", action="store_true", help="Also try torch.compile (compile time reported).")
    parser.add_argument("--device", default="cuda", help="Device (cpu only for testing the script).")
    parser.add_argument("--json", default=None, help="Write the results here.")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    megapixels = args.size * args.size / 1e6
    pipe = InDIPipeline.from_pretrained(args.model).to(device)
    pipe.set_progress_bar_config(disable=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{name}, {args.size}x{args.size}, {args.steps} steps", flush=True)
    rows = {}

    def report(label: str, row: dict) -> None:
        """Print a row and rewrite the JSON at once: a run stopped by a time limit keeps the rows it measured."""
        rows[label] = row
        extra = "".join(f", {k} {v:.2f}" for k, v in row.items() if k not in ("ms", "megapixels_per_s"))
        print(f"  {label:32s} {row['ms']:9.1f} ms  {row['megapixels_per_s']:7.2f} MP/s{extra}", flush=True)
        if args.json:
            result = {"device": name, "size": args.size, "steps": args.steps, "torch": torch.__version__, "rows": rows}
            Path(args.json).write_text(json.dumps(result, indent=2))

    seconds, reference = timed(pipe, image, args.steps, args.repeats, device)
    report("eager fp32", {"ms": seconds * 1000, "megapixels_per_s": megapixels / seconds})
    pipe.unet.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    seconds, out = timed(pipe, image, args.steps, args.repeats, device)
    report(
        "bf16 + channels_last",
        {
            "ms": seconds * 1000,
            "megapixels_per_s": megapixels / seconds,
            "psnr_vs_fp32_db": psnr(out.float(), reference.float()).item(),
        },
    )
    if args.compile:
        # The library's compile path (acceleration.compile_network), then CUDA graphs on top ("reduce-overhead"):
        # the step loop runs one fixed shape, so a captured graph replays it without per-kernel launch cost.
        bf16_network = copy.deepcopy(pipe.unet)
        for label, mode in (("compile", None), ("compile + CUDA graphs", "reduce-overhead")):
            pipe.unet = compile_network(copy.deepcopy(bf16_network), mode=mode)
            start = time.perf_counter()
            timed(pipe, image, args.steps, 1, device)  # compiles (and captures) during its warm-up call
            compile_s = time.perf_counter() - start
            seconds, out = timed(pipe, image, args.steps, args.repeats, device)
            report(
                f"bf16 + channels_last + {label}",
                {
                    "ms": seconds * 1000,
                    "megapixels_per_s": megapixels / seconds,
                    "compile_s": compile_s,
                    "psnr_vs_fp32_db": psnr(out.float(), reference.float()).item(),
                },
            )


if __name__ == "__main__":
    main()
