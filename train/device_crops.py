"""Random training crops cut on the training device, in one gather per batch (no Python loop over samples).

The decoded images are uploaded once, as uint8, into one flat buffer on the device: image after image, each in its
own H x W x 3 layout, with a per-image offset, height and width. A flat buffer rather than one padded
(N, 3, Hmax, Wmax) tensor, because a photo set mixes landscape and portrait shapes and padding both to the largest
would about double the memory. Real pairs get a second buffer with the same offsets, so one index gathers the
same crop from both.

Each batch draws, with one ``torch.Generator`` on the device: an image per sample, a top/left inside that image's
own size, a horizontal flip and a number of 90-degree turns (the distribution of ``data.RandomCropStream``). Flip and
turns are affine index transforms (``crop_index``); the batch is then one ``take`` from the buffer.
"""

from __future__ import annotations

import numpy as np
import torch

_UNIFORM_RANGE = 2**62  # one integer draw, reduced modulo each sample's own range (bias below 2**-40)


def crop_index(size: int, offset, width, top, left, flip, turns) -> torch.Tensor:
    """(B, 3, size, size) positions, in a flat buffer of H x W x 3 images, of each sample's flipped and turned crop.

    Arguments are (B,) integer tensors: the image's offset in the buffer and width, the crop's top/left, and the
    flip and turns of ``data.dihedral`` (``np.rot90(crop[:, ::-1] if flip else crop, turns)``). These are affine
    maps of the output grid: output pixel (i, j) reads crop pixel (i, j), (j, n - i), (n - i, n - j) or (n - j, i)
    for 0 to 3 turns (n = size - 1), and the flip mirrors the column read. So each position is
    corner + i * step_i + j * step_j + channel, and the index is built with two broadcast additions.
    """
    last = size - 1
    swap = turns % 2 == 1  # output rows run along the crop's columns
    reverse_rows = turns >= 2
    reverse_cols = ((turns == 1) | (turns == 2)) ^ flip
    row_step = torch.where(reverse_rows, -3 * width, 3 * width)
    col_step = torch.where(reverse_cols, -3, 3)
    corner = offset + 3 * (width * (top + reverse_rows * last) + left + reverse_cols * last)  # output pixel (0, 0)
    step_i, step_j = torch.where(swap, col_step, row_step), torch.where(swap, row_step, col_step)
    grid = torch.arange(size, device=offset.device)
    channel = torch.arange(3, device=offset.device).view(1, 3, 1, 1)
    per_row = corner.view(-1, 1, 1, 1) + channel + step_i.view(-1, 1, 1, 1) * grid.view(1, 1, -1, 1)
    return per_row + step_j.view(-1, 1, 1, 1) * grid.view(1, 1, 1, -1)


class DeviceCropSampler:
    """``sample(batch_size) -> {"clean": uint8 (B, 3, R, R)[, "degraded": ...]}``, all on ``device``.

    ``images``: H x W x 3 uint8 arrays, or (clean, degraded) tuples of equal shape (real pairs); each at least
    ``resolution`` on both sides. ``(seed, rank)`` seed the generator, so every process draws its own stream.
    """

    def __init__(self, images: list, resolution: int, device: torch.device | str, seed: int, rank: int = 0):
        members = [item if isinstance(item, tuple) else (item,) for item in images]
        if not members:
            raise ValueError("no images to crop from")
        shapes = [m[0].shape for m in members]
        if any(len(m) != len(members[0]) or any(a.shape != s for a in m) for m, s in zip(members, shapes)):
            raise ValueError("every item must be an image, or a pair of images of one shape")
        if any(min(s[:2]) < resolution for s in shapes):
            raise ValueError(f"an image is smaller than the crop size {resolution}")
        self.keys = ("clean", "degraded")[: len(members[0])]
        self.resolution = resolution
        self.device = torch.device(device)
        self.rank = rank
        sizes = torch.tensor([s[:2] for s in shapes], dtype=torch.int64)
        lengths = sizes.prod(1) * 3
        offsets = torch.cumsum(lengths, 0) - lengths
        self.buffers = []
        for k in range(len(self.keys)):
            buffer = torch.empty(int(lengths.sum()), dtype=torch.uint8, device=self.device)
            for offset, length, member in zip(offsets.tolist(), lengths.tolist(), members):
                buffer[offset : offset + length].copy_(torch.from_numpy(np.array(member[k], copy=True).reshape(-1)))
            self.buffers.append(buffer)
        self.offsets = offsets.to(self.device)
        self.heights, self.widths = sizes.to(self.device).unbind(1)
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restarts the stream: the generator is seeded from (seed, rank), as RandomCropStream's numpy one is."""
        state = np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0]
        self.generator.manual_seed(int(state))

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        size = self.resolution
        draws = torch.randint(_UNIFORM_RANGE, (4, batch_size), generator=self.generator, device=self.device)
        image = draws[0] % len(self.offsets)
        height, width = self.heights[image], self.widths[image]
        top, left = draws[1] % (height - size + 1), draws[2] % (width - size + 1)
        flip, turns = draws[3] % 2 == 1, draws[3] // 2 % 4
        index = crop_index(size, self.offsets[image], width, top, left, flip, turns)
        return {key: buffer.take(index) for key, buffer in zip(self.keys, self.buffers)}

    def batches(self, batch_size: int):
        """An endless iterator of ``sample(batch_size)``."""
        while True:
            yield self.sample(batch_size)
