"""Tiled network evaluation for large images: overlapping tiles, batched, blended with smooth weights.

InDI's walk is global (every step mixes the whole prediction with the whole sample), so only the network call is
tiled: at each step the network sees overlapping tiles and their predictions are blended back into one image.
InDINet has no global pooling, so away from tile borders a tile's prediction equals the untiled one; the blend
window (a triangle that favours pixels far from tile borders) hides what differs near the borders.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Measured on a 1024x1024 photo with the zoo's defocus model: tiled vs untiled PSNR 71 dB at 512/64, 56 dB at 256/64.
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64
# Images with more pixels than this are tiled automatically (the app and the CLI rely on it).
AUTO_TILE_PIXELS = 1024 * 1024


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets covering [0, length) with tiles of size ``tile`` overlapping by at least ``overlap``.

    Starts are multiples of ``align`` (the network's input multiple), so every tile sees the same downsampling
    grid as the whole image; the last tile ends exactly at ``length``.
    """
    if tile >= length:
        return [0]
    starts = [0]
    while starts[-1] + tile < length:
        # The furthest aligned start that still overlaps the previous tile by `overlap`; the last tile ends at `length`.
        following = max(starts[-1] + align, (starts[-1] + tile - overlap) // align * align)
        starts.append(min(following, length - tile))
    return starts


def ramp(length: int, at_start: bool, at_end: bool, device, dtype) -> torch.Tensor:
    """1-D blend weights of a tile: a triangle that favours pixels far from the sides that meet another tile.

    The network's receptive field is wider than a tile, so a pixel's prediction is better the more context it had;
    weighting by the distance to the tile border blends each pixel mostly from the tile that centres it.
    Sides on the image border keep full weight (no other tile covers them).
    """
    position = torch.arange(length, device=device, dtype=dtype) + 0.5
    weights = torch.ones(length, device=device, dtype=dtype)
    if at_start:
        weights = torch.minimum(weights, position / (length / 2))
    if at_end:
        weights = torch.minimum(weights, (length - position) / (length / 2))
    return weights


def count_tiles(height: int, width: int, tile_size: int, overlap: int, align: int = 1) -> int:
    rows = tile_starts(height, min(tile_size, height), min(overlap, min(tile_size, height) // 2), align)
    cols = tile_starts(width, min(tile_size, width), min(overlap, min(tile_size, width) // 2), align)
    return len(rows) * len(cols)


def predict_tiled(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sample: torch.Tensor,
    timestep: torch.Tensor,
    tile_size: int,
    overlap: int,
    batch_size: int = 4,
    on_batch: Callable[[int], None] | None = None,
    align: int = 1,
) -> torch.Tensor:
    """Runs ``predict(tiles, timesteps)`` over overlapping tiles of ``sample`` (N, C, H, W) and blends the results.

    ``tile_size`` and the image size must already be multiples of the network's input multiple. ``timestep`` has
    one value per image, or is a scalar (the same t for all). ``on_batch(n)`` is called after each batch of ``n`` tiles (progress bars).
    """
    n, _, height, width = sample.shape
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    overlap_h, overlap_w = min(overlap, tile_h // 2), min(overlap, tile_w // 2)
    rows, cols = tile_starts(height, tile_h, overlap_h, align), tile_starts(width, tile_w, overlap_w, align)
    tiles = [(i, top, left) for i in range(n) for top in rows for left in cols]

    output = torch.zeros(sample.shape, device=sample.device, dtype=torch.float32)
    total_weight = torch.zeros((n, 1, height, width), device=sample.device, dtype=torch.float32)
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start : start + batch_size]
        batch = torch.stack([sample[i, :, top : top + tile_h, left : left + tile_w] for i, top, left in chunk])
        times = timestep if timestep.ndim == 0 else timestep[[i for i, _, _ in chunk]]
        predictions = predict(batch, times).float()
        for prediction, (i, top, left) in zip(predictions, chunk):
            weight_y = ramp(tile_h, top > 0, top + tile_h < height, sample.device, torch.float32)
            weight_x = ramp(tile_w, left > 0, left + tile_w < width, sample.device, torch.float32)
            weight = weight_y[:, None] * weight_x[None, :]
            output[i, :, top : top + tile_h, left : left + tile_w] += prediction * weight
            total_weight[i, :, top : top + tile_h, left : left + tile_w] += weight
        if on_batch is not None:
            on_batch(len(chunk))
    return (output / total_weight).to(sample.dtype)
