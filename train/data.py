"""Training data: clean-image folders, real-pair folders and `datasets` datasets, cut into random crops.

Images are decoded once into memory (uint8). Crops are cut either on the training device, a batch at a time
(``device_crops.DeviceCropSampler``, the default), or here by DataLoader workers (``RandomCropStream``), which the
JPEG task needs: JPEG is the one degradation done in the workers (it needs PIL on the CPU); the others run batched
on the training device (see ``train_indi.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.data import IterableDataset, get_worker_info

from indi_pipeline.degradations import bicubic_upsample, jpeg_compress
from indi_pipeline.photo_mix import photo_jpeg

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class DataError(ValueError):
    """A data folder cannot be used; the message names the files."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; a DataError if the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"data folder {folder} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _read_all(paths: list[Path], min_size: int) -> list[np.ndarray]:
    """Decodes every image; one DataError listing every unreadable or too-small file."""
    images, problems = [], []
    for path in paths:
        try:
            array = _read_rgb(path)
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
            problems.append(f"{path}: unreadable image ({error})")
            continue
        if min(array.shape[:2]) < min_size:
            problems.append(f"{path}: {array.shape[1]}x{array.shape[0]} is smaller than the crop size {min_size}")
            continue
        images.append(array)
    if problems:
        raise DataError("cannot use these training images:\n  " + "\n  ".join(problems))
    return images


def load_clean_folder(folder: str | Path, min_size: int) -> list[np.ndarray]:
    """All clean images of a folder as uint8 H x W x 3 arrays."""
    return _read_all(list_images(folder), min_size)


def load_paired_folder(
    folder: str | Path, min_size: int, upscale_factor: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real pairs from ``folder/clean`` and ``folder/degraded``, matched by file stem.

    For super-resolution (``upscale_factor > 1``) a degraded image may be the low-resolution one; it is upsampled
    with the library's bicubic (as at inference) to the clean image's size.
    """
    folder = Path(folder)
    clean_paths = {p.stem: p for p in list_images(folder / "clean")}
    degraded_paths = {p.stem: p for p in list_images(folder / "degraded")}
    only_clean = sorted(set(clean_paths) - set(degraded_paths))
    only_degraded = sorted(set(degraded_paths) - set(clean_paths))
    if only_clean or only_degraded:
        lines = [f"clean/{clean_paths[s].name} has no degraded/ partner" for s in only_clean]
        lines += [f"degraded/{degraded_paths[s].name} has no clean/ partner" for s in only_degraded]
        raise DataError(f"pairs in {folder} do not match by name:\n  " + "\n  ".join(lines))
    stems = sorted(clean_paths)
    clean = _read_all([clean_paths[s] for s in stems], min_size)
    degraded = _read_all([degraded_paths[s] for s in stems], 1)
    pairs, problems = [], []
    for stem, c, d in zip(stems, clean, degraded):
        if d.shape != c.shape and upscale_factor > 1 and d.shape[0] * upscale_factor == c.shape[0]:
            d_tensor = torch.from_numpy(d).permute(2, 0, 1)[None].float() / 255.0
            d_up = bicubic_upsample(d_tensor, size=c.shape[:2])
            d = (d_up[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        if d.shape != c.shape:
            problems.append(f"{stem}: clean is {c.shape[1]}x{c.shape[0]}, degraded is {d.shape[1]}x{d.shape[0]}")
            continue
        pairs.append((c, d))
    if problems:
        raise DataError(f"pairs in {folder} differ in size:\n  " + "\n  ".join(problems))
    return pairs


def load_hf_dataset(name: str, config: str | None, split: str, image_column: str, min_size: int) -> list[np.ndarray]:
    """Clean images from a Hugging Face `datasets` dataset (``imagefolder`` with ``data_dir`` works offline)."""
    import datasets

    if Path(name).is_dir():
        dataset = datasets.load_dataset("imagefolder", data_dir=name, split=split)
    else:
        dataset = datasets.load_dataset(name, config, split=split)
    if image_column not in dataset.column_names:
        raise DataError(f"dataset {name} has no column {image_column!r}; columns: {dataset.column_names}")
    images, problems = [], []
    for i, image in enumerate(dataset[image_column]):
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if min(array.shape[:2]) < min_size:
            problems.append(f"row {i}: {array.shape[1]}x{array.shape[0]} is smaller than the crop size {min_size}")
        else:
            images.append(array)
    if problems:
        raise DataError(f"cannot use these images of {name}:\n  " + "\n  ".join(problems))
    if not images:
        raise DataError(f"dataset {name} split {split} holds no images")
    return images


def dihedral(crop: np.ndarray, flip: bool, turns: int) -> np.ndarray:
    """The crop's augmentation: a horizontal flip (or not), then ``turns`` counter-clockwise 90-degree turns."""
    return np.rot90(crop[:, ::-1] if flip else crop, turns)


class RandomCropStream(IterableDataset):
    """An endless stream of random crops (uint8, 3 x R x R) with random flips and 90-degree rotations.

    Each sample is a dict with "clean" and, for real pairs or JPEG (degraded here, in the worker), "degraded".
    Every (seed, rank, worker) triple draws its own reproducible stream.
    """

    def __init__(
        self,
        images: list,
        resolution: int,
        seed: int,
        rank: int = 0,
        jpeg_in_worker: bool = False,
        jpeg_mix: str = "benchmark",
    ):
        super().__init__()
        # the task's definition, or the photo mix (indi_pipeline.photo_mix); a module-level function: workers pickle it
        self.jpeg = {"benchmark": jpeg_compress, "photo": photo_jpeg}[jpeg_mix]
        self.images = images
        self.resolution = resolution
        self.seed = seed
        self.rank = rank
        self.jpeg_in_worker = jpeg_in_worker

    def __iter__(self):
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker_id])
        jpeg_generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        size = self.resolution
        while True:
            item = self.images[int(rng.integers(len(self.images)))]
            pair = item if isinstance(item, tuple) else (item,)
            height, width = pair[0].shape[:2]
            top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
            flip, turns = bool(rng.integers(2)), int(rng.integers(4))
            crops = []
            for array in pair:
                crop = dihedral(array[top : top + size, left : left + size], flip, turns)
                crops.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1))
            sample = {"clean": crops[0]}
            if len(crops) == 2:
                sample["degraded"] = crops[1]
            elif self.jpeg_in_worker:
                degraded = self.jpeg(crops[0][None].float() / 255.0, generator=jpeg_generator)[0]
                sample["degraded"] = (degraded * 255.0).round().to(torch.uint8)
            yield sample
