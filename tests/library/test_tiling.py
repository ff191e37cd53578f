"""Tiled inference: coverage, alignment, seams, odd sizes, tiles larger than the image, automatic tiling."""

import pytest
import torch
from conftest import make_tiny_pipeline

from indi_pipeline import tiling
from indi_pipeline.metrics import psnr


@pytest.mark.parametrize(
    "length,tile,overlap,align",
    [(1024, 512, 64, 32), (800, 512, 64, 32), (37, 16, 4, 8), (3000, 512, 64, 32), (520, 512, 64, 8)],
)
def test_tile_starts_cover_align_and_overlap(length, tile, overlap, align):
    starts = tiling.tile_starts(length, tile, overlap, align)
    assert starts[0] == 0 and starts[-1] == length - tile
    assert all(s % align == 0 for s in starts[:-1])
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_tile_larger_than_image_is_one_tile():
    assert tiling.tile_starts(300, 512, 64, 32) == [0]


def _image(height, width, seed=0):
    smooth = torch.rand((1, 3, height // 4 + 1, width // 4 + 1), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(smooth, size=(height, width), mode="bilinear")


def _run(pipe, image, **kwargs):
    return pipe(
        image, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs
    ).images


@pytest.mark.parametrize("height,width", [(128, 128), (45, 77)])
def test_tiled_matches_untiled_without_seams(height, width):
    pipe = make_tiny_pipeline(eps=0.05)
    untiled = _run(pipe, _image(height, width), tile_size=0)
    tiled = _run(pipe, _image(height, width), tile_size=80, tile_overlap=32)
    assert tiled.shape == untiled.shape == (1, 3, height, width)
    assert psnr(tiled, untiled).item() >= 45.0


def test_tile_larger_than_image_is_exactly_untiled():
    pipe = make_tiny_pipeline(eps=0.05)
    image = _image(37, 53)
    assert torch.equal(_run(pipe, image, tile_size=512), _run(pipe, image, tile_size=0))


@pytest.mark.slow
def test_automatic_tiling_above_one_megapixel_and_progress_counts_tiles(monkeypatch):
    pipe = make_tiny_pipeline()
    calls = []
    original = tiling.predict_tiled

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr("indi_pipeline.pipeline_indi.predict_tiled", spy)
    small = torch.rand(1, 3, 64, 64)
    _run(pipe, small)
    assert calls == []
    big = torch.rand(1, 3, 1032, 1024)  # just above 1 MP
    out = _run(pipe, big)
    assert out.shape == (1, 3, 1032, 1024) and len(calls) == 2  # tiled at both steps
    tiles = tiling.count_tiles(1032, 1024, tiling.DEFAULT_TILE_SIZE, tiling.DEFAULT_TILE_OVERLAP, pipe.input_multiple)
    batch = 4
    assert pipe._network_calls(pipe_batch(big), tiling.DEFAULT_TILE_SIZE, 64, batch) == -(-tiles // batch)


def pipe_batch(image):
    from indi_pipeline.image_io import to_image_batches

    return to_image_batches(image)[0]


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"tile_size": -1}, "tile_size"),
        ({"tile_size": 2.5}, "tile_size"),
        ({"tile_size": 32, "tile_overlap": 16}, "tile_overlap"),
        ({"tile_size": 32, "tile_overlap": 4, "tile_batch_size": 0}, "tile_batch_size"),
    ],
)
def test_bad_tile_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        _run(make_tiny_pipeline(), _image(64, 64), **kwargs)
