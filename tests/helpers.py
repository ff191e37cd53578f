"""Helpers that several test files share, imported as ``from helpers import ...`` (pytest puts tests/ on sys.path
because tests/conftest.py lives there). Fixtures live in conftest.py, which subfolders inherit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# ------------------------------------------------------------------------------ training runs (tests/train/)
ROOT = Path(__file__).resolve().parents[1]  # the checkout's root
SCRIPT = ROOT / "train" / "train_indi.py"
MODULE = "train.train_indi"  # run as `python -m train.train_indi` from the checkout's root

# Tiny InDINet (input multiple 2 * 2**2 = 8; crops must be a multiple of that).
TINY = ["--width", "12", "--encoder_blocks", "1", "1", "--decoder_blocks", "1", "1", "--middle_blocks", "1"]
FAST = [
    "--resolution",
    "64",
    "--train_batch_size",
    "2",
    "--dataloader_num_workers",
    "0",
    "--lr_warmup_steps",
    "1",
    "--logging_steps",
    "1",
    "--validation_steps",
    "0",
    "--seed",
    "0",
]


def texture(seed: int, size: int = 80) -> Image.Image:
    """Random texture with some structure (smoothed noise + stripes), uint8 RGB."""
    rng = np.random.default_rng(seed)
    noise = rng.random((size, size, 3))
    smooth = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(noise, (1, 1), (0, 1))) / 4
    yy, xx = np.mgrid[:size, :size]
    stripes = 0.5 + 0.5 * np.sin((xx + 2 * yy) * (0.2 + 0.1 * seed))[..., None]
    return Image.fromarray((255 * (0.6 * smooth + 0.4 * stripes)).clip(0, 255).astype(np.uint8))


def make_folder(folder: Path, n: int = 3, size: int = 80, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        texture(seed + i, size).save(folder / f"img{i}.png")
    return folder


def make_pairs(folder: Path, names=("a", "b", "c"), degraded_names=None) -> Path:
    (folder / "clean").mkdir(parents=True, exist_ok=True)
    (folder / "degraded").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        texture(i).save(folder / "clean" / f"{name}.png")
    for i, name in enumerate(degraded_names if degraded_names is not None else names):
        # a "real" degradation the library does not model: a colour cast plus quantisation
        array = np.asarray(texture(i)).astype(np.float32)
        array = (np.round(array * np.array([0.9, 1.0, 0.8]) / 16) * 16).clip(0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / "degraded" / f"{name}.png")
    return folder


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        DIFFUSERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(ROOT),  # the train package, for children that run a file rather than `-m`
    )
    env.pop("ACCELERATE_CONFIG_FILE", None)
    return env


def info(out: Path) -> dict:
    return json.loads((out / "train_info.json").read_text())


def assert_fp16_repo(out: Path, t_sampling: str = "uniform") -> None:
    from safetensors import safe_open

    assert (out / "model_index.json").is_file()
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "InDIPipeline"
    config = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert config["t_sampling"] == t_sampling
    weights = out / "unet" / "diffusion_pytorch_model.safetensors"
    assert (out / "unet" / "config.json").is_file() and weights.is_file()
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
        assert keys
        dtypes = {f.get_tensor(k).dtype for k in keys}
    assert dtypes == {torch.float16}, dtypes


# ------------------------------------------------------- a local Hugging Face Hub cache (tests/library/)
HUB_REPO_ID = "indi-test-org/indi-tiny"
LFS_SUFFIXES = (".safetensors", ".bin")


def _blob_name(path: Path, data: bytes) -> str:
    if path.suffix in LFS_SUFFIXES:  # LFS files are stored under their sha256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


def build_hub_cache(cache_dir: Path, repo_id: str, source: Path, with_tree: bool = False) -> Path:
    """Lays ``source`` (a repo folder) out in ``cache_dir`` as a downloaded Hub repo; returns the snapshot folder.

    ``with_tree`` also writes the repo's cached tree listing (``trees/<commit>.json``, written by huggingface_hub
    >= 1.x after an online download), which makes diffusers filter files (e.g. refuse pickles) before loading.
    """
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{source}".encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    entries = {}
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source).as_posix()
        data = file.read_bytes()
        blob = repo_dir / "blobs" / _blob_name(file, data)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
        entries[rel] = (len(data), file.suffix in LFS_SUFFIXES, blob.name, data)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    if with_tree:
        tree_cache = pytest.importorskip("huggingface_hub._tree_cache")
        tree = {  # the Hub's blob_id is the git blob id (of the LFS pointer for LFS files; any hex does here)
            rel: tree_cache.TreeCacheEntry(
                size=size,
                blob_id=hashlib.sha1(data).hexdigest() if lfs else name,
                lfs_sha256=name if lfs else None,
                lfs_size=size if lfs else None,
            )
            for rel, (size, lfs, name, data) in entries.items()
        }
        tree_cache.write_tree_cache(str(repo_dir), commit, tree)
    return snapshot


# ------------------------------------------------------------------------------ evaluations and cards (tests/train/, tests/zoo/)
def smooth_photos(folder: Path, count: int = 2, size: int = 64) -> Path:
    """``count`` smooth random photos of ``size`` px in a new ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        smooth = rng.random((size // 8, size // 8, 3))
        image = Image.fromarray((smooth * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        image.save(folder / f"photo{i}.png")
    return folder


def tiny_repo(folder: Path, task: str, identity: bool, eps: float = 0.0) -> Path:
    """A saved pipeline of the tiny test network: the identity (F(x_t, t) = x_t) or perturbed."""
    from conftest import make_tiny_net

    from indi_pipeline import InDIPipeline, InDIScheduler, get_task

    net = make_tiny_net(perturb=not identity)
    pipe = InDIPipeline(net, InDIScheduler(eps=eps), upscale_factor=get_task(task).upscale_factor, task=task)
    pipe.save_pretrained(folder)
    return folder


def tiny_eval_argv(repo: Path, photos: Path, task: str, *extra: str) -> list[str]:
    """train.eval_indi's arguments for 64 px crops at 1 and 2 steps with a 2-seed variation measure: fast, every code
    path."""
    return [
        "--model", str(repo), "--task", task, "--data_dir", str(photos), "--crop", "64", "--steps", "1", "2",
        "--variation_seeds", "2", "--variation_images", "1", "--variation_crop", "32", "--threads", "1", *extra,
    ]  # fmt: skip


def evaluate_tiny(repo: Path, photos: Path, task: str, *extra: str) -> dict:
    """train.eval_indi run with tiny_eval_argv: its result."""
    from train import eval_indi

    return eval_indi.main(tiny_eval_argv(repo, photos, task, *extra))
