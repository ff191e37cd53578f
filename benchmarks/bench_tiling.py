"""`indi bench --tiled`: tiled inference figures. The large restore runs in a child process so that its peak
resident memory (ru_maxrss) is its own, not the benchmark's."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from indi_pipeline.tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE

CHECKOUT = Path(__file__).resolve().parent.parent


def _load(model: str | None):
    from benchmarks.models import load_network
    from indi_pipeline.acceleration import optimize_for_inference
    from indi_pipeline.pipeline_indi import InDIPipeline

    net, scheduler, _ = load_network(model)
    pipe = InDIPipeline(unet=net.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return optimize_for_inference(pipe)  # as `indi restore` runs it: channels_last, freed memory reused


def _image(height: int, width: int) -> torch.Tensor:
    # Smooth random content: realistic enough for timing, and reproducible.
    coarse = torch.rand(1, 3, height // 16 + 2, width // 16 + 2, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def seam_psnr(model: str | None, size: int, steps: int, tile_size: int, tile_overlap: int) -> dict:
    """PSNR between tiled and untiled restores of one size x size image (same seed): how visible seams are."""
    from indi_pipeline.metrics import psnr

    pipe, image = _load(model), _image(size, size)

    def run(tiles: int) -> torch.Tensor:
        return pipe(
            image,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            tile_size=tiles,
            tile_overlap=tile_overlap,
        ).images

    return {
        "size": size,
        "steps": steps,
        "tile_size": tile_size,
        "tile_overlap": tile_overlap,
        "psnr_db": round(psnr(run(tile_size), run(0)).item(), 2),
    }


def large_restore(model: str | None, height: int, width: int, steps: int, tile_size: int, tile_overlap: int) -> dict:
    """Time and peak memory of a tiled restore of a height x width image, measured in a fresh child process."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_tiling",
        json.dumps(
            {
                "model": model,
                "height": height,
                "width": width,
                "steps": steps,
                "tile_size": tile_size,
                "tile_overlap": tile_overlap,
                "threads": torch.get_num_threads(),
            }
        ),
    ]
    # From the checkout's root, where `benchmarks` is importable.
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=CHECKOUT)
    if result.returncode != 0:
        raise RuntimeError(f"the tiled restore failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _child(settings: dict) -> None:
    torch.set_num_threads(settings["threads"])
    pipe = _load(settings["model"])
    image = _image(settings["height"], settings["width"])
    start = time.perf_counter()
    out = pipe(
        image,
        num_inference_steps=settings["steps"],
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        tile_size=settings["tile_size"],
        tile_overlap=settings["tile_overlap"],
    ).images
    seconds = time.perf_counter() - start
    assert out.shape[-2:] == image.shape[-2:]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(
        json.dumps(
            {
                "height": settings["height"],
                "width": settings["width"],
                "steps": settings["steps"],
                "tile_size": settings["tile_size"],
                "tile_overlap": settings["tile_overlap"],
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_mb),
            }
        )
    )


DEFAULTS = {"tile_size": DEFAULT_TILE_SIZE, "tile_overlap": DEFAULT_TILE_OVERLAP}

if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
