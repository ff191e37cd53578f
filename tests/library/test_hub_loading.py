"""Loading InDIPipeline from a folder and BY REPO ID from a local Hugging Face Hub cache, offline.

The cache is built exactly as huggingface_hub lays it out::

    <cache>/models--<org>--<name>/blobs/<git-sha1 | sha256 for LFS files>
                                 /snapshots/<40-hex commit>/<files, symlinks to ../../blobs/...>
                                 /refs/main            (the commit hash)
"""

import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from conftest import make_tiny_pipeline
from helpers import HUB_REPO_ID, build_hub_cache
from safetensors.torch import load_file

from indi_pipeline import InDINet, InDIPipeline, InDIScheduler


@pytest.fixture
def saved_pipe(tmp_path):
    pipe = make_tiny_pipeline(eps=0.03, noise_schedule="brownian")
    folder = tmp_path / "repo"
    pipe.save_pretrained(folder)
    return pipe, folder


def _outputs(pipe):
    image = np.random.default_rng(0).random((2, 11, 13, 3), dtype=np.float32)
    return pipe(image, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images


def _assert_same_pipeline(loaded, pipe):
    assert isinstance(loaded, InDIPipeline)
    assert isinstance(loaded.unet, InDINet) and isinstance(loaded.scheduler, InDIScheduler)
    assert loaded.config.upscale_factor == pipe.config.upscale_factor

    def public(config):  # JSON turns tuples into lists
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}

    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    assert public(loaded.unet.config) == public(pipe.unet.config)
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], value), name
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(_outputs(loaded), _outputs(pipe))


# ------------------------------------------------------------------------------------------------------ folder
def test_save_and_load_folder(saved_pipe):
    pipe, folder = saved_pipe
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "InDIPipeline"
    assert index["unet"][1] == "InDINet" and index["unet"][0].startswith("indi_pipeline")
    assert index["scheduler"][1] == "InDIScheduler" and index["scheduler"][0].startswith("indi_pipeline")
    _assert_same_pipeline(InDIPipeline.from_pretrained(folder), pipe)


def test_save_and_load_super_resolution(tmp_path):
    pipe = make_tiny_pipeline(upscale_factor=4)
    pipe.save_pretrained(tmp_path)
    loaded = InDIPipeline.from_pretrained(tmp_path)
    assert loaded.config.upscale_factor == 4
    loaded.set_progress_bar_config(disable=True)
    out = loaded(np.zeros((3, 5, 3), np.float32), num_inference_steps=1, output_type="np").images
    assert out.shape == (1, 12, 20, 3)


def test_components_can_be_replaced_at_load(saved_pipe):
    _, folder = saved_pipe
    loaded = InDIPipeline.from_pretrained(folder, scheduler=InDIScheduler(eps=0.0, timestep_spacing="power"))
    assert loaded.scheduler.config.timestep_spacing == "power"


# -------------------------------------------------------------------------------------------------- Hub cache
@pytest.mark.parametrize("with_tree", [False, True])
def test_load_by_repo_id_from_hub_cache(hub_cache, saved_pipe, with_tree):
    pipe, folder = saved_pipe
    snapshot = build_hub_cache(hub_cache, HUB_REPO_ID, folder, with_tree=with_tree)
    assert (snapshot / "unet" / "diffusion_pytorch_model.safetensors").is_symlink()

    # The Hub code path resolves the cached snapshot (no network: offline)
    assert huggingface_hub.constants.HF_HUB_OFFLINE
    resolved = huggingface_hub.snapshot_download(HUB_REPO_ID)
    assert Path(resolved) == snapshot
    assert Path(huggingface_hub.snapshot_download(HUB_REPO_ID, cache_dir=hub_cache)) == snapshot
    config = huggingface_hub.hf_hub_download(HUB_REPO_ID, "unet/config.json")
    assert Path(config).resolve().parent.name == "blobs"
    assert not os.path.isdir(HUB_REPO_ID)  # a repo id, not a local folder

    loaded = InDIPipeline.from_pretrained(HUB_REPO_ID)
    assert loaded.name_or_path == HUB_REPO_ID
    _assert_same_pipeline(loaded, pipe)
    # explicit cache_dir works as well
    _assert_same_pipeline(InDIPipeline.from_pretrained(HUB_REPO_ID, cache_dir=hub_cache), pipe)


def test_missing_repo_in_cache_fails(hub_cache):
    with pytest.raises(Exception) as info:
        InDIPipeline.from_pretrained("indi-test-org/not-cached")
    assert "not-cached" in str(info.value) or "cache" in str(info.value).lower()


def _pickle_repo(folder: Path) -> Path:
    """The saved repo with its unet weights as a pickle (.bin) instead of safetensors."""
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    return folder


def test_pickle_weights_are_refused_in_a_folder(saved_pipe):
    folder = _pickle_repo(saved_pipe[1])
    with pytest.raises(OSError, match="safetensors"):
        InDIPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="safetensors"):
        InDIPipeline.from_pretrained(folder, use_safetensors=False)


@pytest.mark.parametrize("with_tree", [False, True])
def test_pickle_weights_are_refused_from_the_hub(hub_cache, saved_pipe, with_tree):
    folder = _pickle_repo(saved_pipe[1])
    build_hub_cache(hub_cache, HUB_REPO_ID, folder, with_tree=with_tree)
    with pytest.raises(OSError, match="safetensors"):
        InDIPipeline.from_pretrained(HUB_REPO_ID)


def test_missing_unet_folder(saved_pipe, hub_cache):
    folder = saved_pipe[1]
    shutil.rmtree(folder / "unet")
    with pytest.raises(OSError, match="unet/"):
        InDIPipeline.from_pretrained(folder)
    build_hub_cache(hub_cache, HUB_REPO_ID, folder)
    with pytest.raises(OSError, match="unet/"):
        InDIPipeline.from_pretrained(HUB_REPO_ID)
