"""Crops cut on the training device (issue 6): train/device_crops.DeviceCropSampler and train_indi's --crop_sampler.

The sampler is checked on tiny images whose every pixel names itself (channels = image id, row, column), so each
crop is matched by brute force against the source images under the 8 flip/turn transforms of data.dihedral (the
augmentation RandomCropStream applies). Data, flags and helpers for the training runs come from tests/helpers.py.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from helpers import FAST, TINY, info, make_pairs

from train.data import dihedral
from train.device_crops import DeviceCropSampler, crop_index

SIZE = 4
SHAPES = [(6, 9), (11, 5), (4, 4)]  # landscape, portrait, exactly the crop size
DIHEDRAL = [(flip, turns) for flip in (False, True) for turns in range(4)]


def self_naming_images(shapes=SHAPES) -> list[np.ndarray]:
    """H x W x 3 uint8 images whose pixel (r, c) of image k is (k, r, c): every pixel of every image differs."""
    images = []
    for k, (height, width) in enumerate(shapes):
        rows, cols = np.mgrid[:height, :width]
        images.append(np.stack([np.full_like(rows, k), rows, cols], axis=-1).astype(np.uint8))
    return images


def locate(crop: torch.Tensor, images: list[np.ndarray]) -> tuple[int, int, int, tuple[bool, int]]:
    """(image, top, left, (flip, turns)) of a 3 x R x R crop, found by trying every flip/turn on its window."""
    array = crop.permute(1, 2, 0).numpy()
    k, top, left = int(array[0, 0, 0]), int(array[..., 1].min()), int(array[..., 2].min())
    window = images[k][top : top + SIZE, left : left + SIZE]
    matches = [t for t in DIHEDRAL if window.shape[:2] == (SIZE, SIZE) and np.array_equal(dihedral(window, *t), array)]
    assert len(matches) == 1, f"not a flipped/turned crop of image {k}: {array.tolist()}"
    return k, top, left, matches[0]


def test_index_transforms_are_the_workers_flip_and_turns():
    image = self_naming_images([(SIZE + 1, SIZE + 2)])[0]
    flips, turns = (torch.tensor(v) for v in zip(*DIHEDRAL))
    ones = torch.ones(len(DIHEDRAL), dtype=torch.int64)
    index = crop_index(SIZE, 0 * ones, (SIZE + 2) * ones, ones, 2 * ones, flips, turns)
    crops = torch.from_numpy(image.reshape(-1))[index].permute(0, 2, 3, 1).numpy()
    for crop, transform in zip(crops, DIHEDRAL):
        assert np.array_equal(crop, dihedral(image[1 : 1 + SIZE, 2 : 2 + SIZE], *transform)), transform


def test_crops_are_flipped_turned_windows_inside_each_image():
    images = self_naming_images()
    batch = DeviceCropSampler(images, SIZE, "cpu", seed=0).sample(400)
    assert set(batch) == {"clean"}
    clean = batch["clean"]
    assert clean.dtype == torch.uint8 and clean.shape == (400, 3, SIZE, SIZE) and clean.is_contiguous()
    found = [locate(crop, images) for crop in clean]
    for k, (height, width) in enumerate(SHAPES):
        tops = {top for i, top, _, _ in found if i == k}
        lefts = {left for i, _, left, _ in found if i == k}
        # every valid position of THIS image's own size is drawn (and, by locate, never one outside it)
        assert tops == set(range(height - SIZE + 1)) and lefts == set(range(width - SIZE + 1)), (k, tops, lefts)
    counts = collections.Counter(transform for _, _, _, transform in found)
    assert set(counts) == set(DIHEDRAL) and min(counts.values()) > 400 / 8 / 3, counts
    assert min(collections.Counter(k for k, _, _, _ in found).values()) > 400 / 3 / 3


def test_pairs_get_identical_crops():
    clean = self_naming_images()
    pairs = [(image, 255 - image) for image in clean]
    batch = DeviceCropSampler(pairs, SIZE, "cpu", seed=3).sample(64)
    assert set(batch) == {"clean", "degraded"}
    assert torch.equal(batch["degraded"], 255 - batch["clean"])
    for crop in batch["clean"]:
        locate(crop, clean)


def test_same_seed_same_batches_and_reseed_restarts():
    images = self_naming_images()
    first = DeviceCropSampler(images, SIZE, "cpu", seed=5, rank=1)
    again = DeviceCropSampler(images, SIZE, "cpu", seed=5, rank=1)
    batches = [first.sample(16)["clean"] for _ in range(3)]
    assert all(torch.equal(b, again.sample(16)["clean"]) for b in batches)
    other_rank = DeviceCropSampler(images, SIZE, "cpu", seed=5, rank=0).sample(16)["clean"]
    assert not torch.equal(other_rank, batches[0])
    first.reseed(5)
    assert torch.equal(first.sample(16)["clean"], batches[0])
    first.reseed(6)
    assert not torch.equal(first.sample(16)["clean"], batches[0])


def test_rejects_images_smaller_than_the_crop():
    with pytest.raises(ValueError, match="smaller than the crop size"):
        DeviceCropSampler(self_naming_images([(3, 8)]), SIZE, "cpu", seed=0)


# ------------------------------------------------------------------------------------------- train_indi.py
def _run(train_indi, out, *argv):
    train_indi.main(["--output_dir", str(out), "--max_train_steps", "2", "--report_to", "none", *FAST, *TINY, *argv])
    return info(out)


@pytest.mark.parametrize("crop_sampler", ["device", "workers"])
def test_training_runs_with_each_crop_sampler(tmp_path, clean_dir, train_indi, crop_sampler):
    data = _run(
        train_indi,
        tmp_path / "out",
        "--task",
        "denoise",
        "--train_data_dir",
        str(clean_dir),
        "--crop_sampler",
        crop_sampler,
    )
    assert data["global_step"] == 2 and data["crop_sampler"] == crop_sampler
    assert all(np.isfinite(h["loss"]) for h in data["history"] if "loss" in h)


def test_auto_picks_workers_for_synthetic_jpeg(tmp_path, clean_dir, train_indi, capsys):
    data = _run(train_indi, tmp_path / "out", "--task", "jpeg", "--train_data_dir", str(clean_dir))
    assert data["args"]["crop_sampler"] == "auto" and data["crop_sampler"] == "workers"
    assert "PIL" in data["crop_sampler_reason"]
    with pytest.raises(SystemExit):
        train_indi.parse_args(
            ["--task", "jpeg", "--train_data_dir", "x", "--output_dir", "y", "--crop_sampler", "device"]
        )
    assert "cannot JPEG-compress" in capsys.readouterr().err


def test_auto_picks_device_for_pairs_unless_the_images_are_too_big(tmp_path, train_indi, monkeypatch):
    pairs = make_pairs(tmp_path / "pairs")
    argv = ["--task", "jpeg", "--paired_data_dir", str(pairs), "--output_dir", str(tmp_path / "out"), *FAST]
    args = train_indi.parse_args(argv)
    images = train_indi.load_training_images(args, 1)
    assert train_indi.choose_crop_sampler(args, images, torch.device("cpu"))[0] == "device"
    monkeypatch.setattr(train_indi, "CPU_CROP_MEMORY_BYTES", train_indi.decoded_bytes(images) - 1)
    sampler, why = train_indi.choose_crop_sampler(args, images, torch.device("cpu"))
    assert sampler == "workers" and "more than" in why
    batches, sampler, _ = train_indi.batch_stream(args, images, torch.device("cpu"), seed=0, rank=0)
    batch = next(batches)
    assert sampler == "workers" and batch["clean"].shape == batch["degraded"].shape == (2, 3, 64, 64)


def test_crop_bench_runs(clean_dir):
    from benchmarks import crop_bench

    result = crop_bench.main(
        [
            "--train_data_dir",
            str(clean_dir),
            "--device",
            "cpu",
            "--batches",
            "2",
            "--batch_size",
            "2",
            "--resolution",
            "64",
            "--dataloader_num_workers",
            "0",
        ]
    )
    assert set(result["rows"]) == {"device", "workers"}
    assert all(row["images_per_s"] > 0 for row in result["rows"].values())
