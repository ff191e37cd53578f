"""Loading broken or hostile model repos (issue 7): safetensors only, a clear message for each way a repo can be wrong,
and no code from a repo runs unless the caller passes ``trust_remote_code=True``.

Each row of ROWS is one tiny saved pipeline repo, broken one way, loaded one way, and what must happen. Code a repo
ships appends its file name to a marker file when it runs, so every row also checks which repo code ran (none, except
where the caller trusted the repo). "hub id" rows load by repo id from a local Hugging Face Hub cache, offline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diffusers.utils.dynamic_modules_utils as dynamic_modules
import pytest
import torch
from conftest import TINY_NET_KWARGS, make_tiny_pipeline
from diffusers import DiffusionPipeline
from helpers import HUB_REPO_ID, build_hub_cache
from safetensors.torch import load_file, save_file

from indi_pipeline import InDINet, InDIPipeline
from train import remote_code

WEIGHTS = Path("unet", "diffusion_pytorch_model.safetensors")
# What the generated code of a published repo is (train/remote_code.py): files diffusers runs when trusted.
PUBLISHED_CODE = ("pipeline_indi.py", "unet/indi_pipeline.network.py", "scheduler/indi_pipeline.scheduling_indi.py")


# ---------------------------------------------------------------------------------------- how a repo is broken
def marker_code(marker: Path, name: str) -> str:
    """Top-level Python that records, in ``marker``, that the file ``name`` was executed."""
    return f"open({str(marker)!r}, 'a').write({name!r} + ' ')\n"


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


def pickle_weights(repo: Path, marker: Path) -> None:
    torch.save(load_file(repo / WEIGHTS), repo / WEIGHTS.with_suffix(".bin"))
    (repo / WEIGHTS).unlink()


def unknown_component_class(repo: Path, marker: Path) -> None:
    edit_json(repo / "model_index.json", unet=["indi_pipeline", "NoSuchNet"])


def unknown_component_module(repo: Path, marker: Path) -> None:
    edit_json(repo / "model_index.json", unet=["evil_module", "Evil"])
    (repo / "evil_module.py").write_text(marker_code(marker, "evil_module.py"))  # there, but never imported


def unknown_config_class(repo: Path, marker: Path) -> None:
    edit_json(repo / "unet" / "config.json", _class_name="NoSuchNet")


def truncated_weights(repo: Path, marker: Path) -> None:
    data = (repo / WEIGHTS).read_bytes()
    (repo / WEIGHTS).write_bytes(data[: len(data) // 2])  # an interrupted download


def mismatched_shapes(repo: Path, marker: Path) -> None:
    """Weights of a width-16 network next to the config of the width-8 one."""
    save_file(InDINet(**{**TINY_NET_KWARGS, "width": 16}).state_dict(), repo / WEIGHTS)


def missing_parameter(repo: Path, marker: Path) -> None:
    weights = load_file(repo / WEIGHTS)
    del weights["outro.bias"]
    save_file(weights, repo / WEIGHTS)


def pipeline_code(repo: Path, marker: Path) -> None:
    """A custom pipeline file, as diffusers' ``_class_name: [file stem, class]`` convention names one."""
    code = marker_code(marker, "pipeline.py") + "from indi_pipeline import InDIPipeline as MarkerPipeline\n"
    (repo / "pipeline.py").write_text(code)
    edit_json(repo / "model_index.json", _class_name=["pipeline", "MarkerPipeline"])


def component_code(repo: Path, marker: Path) -> None:
    """A custom network file in the component's folder, as diffusers' remote-code convention names one."""
    code = marker_code(marker, "evilnet.py") + "from indi_pipeline import InDINet as EvilNet\n"
    (repo / "unet" / "evilnet.py").write_text(code)
    edit_json(repo / "model_index.json", unet=["evilnet", "EvilNet"])


def tampered_published_code(repo: Path, marker: Path) -> None:
    """A published repo (train/publish.py's generated code) whose code files were changed to mark that they ran."""
    if not (repo / PUBLISHED_CODE[0]).exists():
        remote_code.add_remote_code(repo)
    for rel in PUBLISHED_CODE:  # appended: the generated files start with `from __future__`
        with open(repo / rel, "a") as file:
            file.write("\n" + marker_code(marker, Path(rel).name))


# --------------------------------------------------------------------------------------------------- loaders
@dataclass(frozen=True)
class Loader:
    load: Callable
    published: bool = False  # plain diffusers loads only a published repo (with its generated code)


LOADERS = {
    "InDIPipeline": Loader(lambda where: InDIPipeline.from_pretrained(where)),
    "InDINet": Loader(lambda where: InDINet.from_pretrained(where, subfolder="unet")),
    "DiffusionPipeline": Loader(lambda where: DiffusionPipeline.from_pretrained(where), published=True),
    "DiffusionPipeline+trust": Loader(
        lambda where: DiffusionPipeline.from_pretrained(where, trust_remote_code=True), published=True
    ),
}


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Expect:
    error: type | None = None  # None: it loads
    says: tuple[str, ...] = ()  # fragments the error message must contain
    ran: str = ""  # the repo's code files that ran, in any order ("" = none); if none, the classes are installed ones


def loads(ran: str = "") -> Expect:
    return Expect(ran=ran)


def fails(error: type, *says: str) -> Expect:
    return Expect(error, says)


NO_SAFETENSORS = fails(OSError, "'unet/' has no safetensors weights", "diffusion_pytorch_model.bin", "never loaded")
CONFIG_CLASS = fails(ValueError, "unet/config.json names the class 'NoSuchNet', not InDINet")
TRUNCATED = fails(OSError, "unet/diffusion_pytorch_model.safetensors is truncated or corrupt", "header lists")
SHAPES = fails(ValueError, "do not fit", "intro.weight has shape (16, 12, 3, 3) in the file but (8, 12, 3, 3)")
MISSING = fails(ValueError, "do not fit", "parameters missing from the file: outro.bias")
UNTRUSTED = "Pass `trust_remote_code=True`"

ROWS = [
    # repo                        loader                     source    what happens
    (pickle_weights, "InDIPipeline", "folder", NO_SAFETENSORS),
    (pickle_weights, "InDIPipeline", "hub id", NO_SAFETENSORS),
    (pickle_weights, "InDINet", "folder", NO_SAFETENSORS),
    (pickle_weights, "InDINet", "hub id", NO_SAFETENSORS),
    (pickle_weights, "DiffusionPipeline+trust", "folder", NO_SAFETENSORS),
    (unknown_component_class, "InDIPipeline", "folder", fails(ValueError, "NoSuchNet")),
    (unknown_component_class, "InDIPipeline", "hub id", fails(ValueError, "NoSuchNet")),
    (unknown_component_module, "InDIPipeline", "folder", fails(ValueError, "evil_module", "import")),
    (unknown_component_module, "InDIPipeline", "hub id", fails(ValueError, "evil_module", "import")),
    (unknown_config_class, "InDIPipeline", "folder", CONFIG_CLASS),
    (unknown_config_class, "InDIPipeline", "hub id", CONFIG_CLASS),
    (unknown_config_class, "InDINet", "folder", CONFIG_CLASS),
    (unknown_config_class, "DiffusionPipeline+trust", "folder", CONFIG_CLASS),
    (truncated_weights, "InDIPipeline", "folder", TRUNCATED),
    (truncated_weights, "InDIPipeline", "hub id", TRUNCATED),
    (truncated_weights, "InDINet", "folder", TRUNCATED),
    (truncated_weights, "InDINet", "hub id", TRUNCATED),
    (truncated_weights, "DiffusionPipeline+trust", "folder", TRUNCATED),
    (mismatched_shapes, "InDIPipeline", "folder", SHAPES),
    (mismatched_shapes, "InDIPipeline", "hub id", SHAPES),
    (mismatched_shapes, "InDINet", "folder", SHAPES),
    (mismatched_shapes, "DiffusionPipeline+trust", "folder", SHAPES),
    (missing_parameter, "InDIPipeline", "folder", MISSING),
    (missing_parameter, "InDINet", "hub id", MISSING),
    (pipeline_code, "InDIPipeline", "folder", loads()),
    (pipeline_code, "InDIPipeline", "hub id", loads()),
    (pipeline_code, "DiffusionPipeline", "folder", fails(ValueError, "pipeline.py", UNTRUSTED)),
    (pipeline_code, "DiffusionPipeline", "hub id", fails(ValueError, "pipeline.py", UNTRUSTED)),
    (component_code, "InDIPipeline", "folder", fails(ValueError, "evilnet.py", UNTRUSTED)),
    (component_code, "InDIPipeline", "hub id", fails(ValueError, "evilnet.py", UNTRUSTED)),
    (component_code, "InDINet", "folder", loads()),
    (tampered_published_code, "InDIPipeline", "folder", loads()),
    (tampered_published_code, "InDIPipeline", "hub id", loads()),
    (tampered_published_code, "InDINet", "hub id", loads()),
    (tampered_published_code, "DiffusionPipeline", "folder", fails(ValueError, "pipeline_indi.py", UNTRUSTED)),
    (tampered_published_code, "DiffusionPipeline", "hub id", fails(ValueError, "pipeline_indi.py", UNTRUSTED)),
    # The control: the marker does record code that runs, once the caller trusts the repo.
    (
        tampered_published_code,
        "DiffusionPipeline+trust",
        "folder",
        loads(ran="pipeline_indi.py indi_pipeline.network.py indi_pipeline.scheduling_indi.py"),
    ),
]


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """diffusers copies and imports trusted repo code from its modules cache: a temporary one, forgotten after."""
    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("diffusers_modules"):
            del sys.modules[name]


def _classes(loaded) -> list[type]:
    return [type(loaded), type(loaded.unet), type(loaded.scheduler)] if hasattr(loaded, "unet") else [type(loaded)]


@pytest.mark.parametrize(
    "break_repo, loader, source, expect",
    ROWS,
    ids=[f"{row[0].__name__}-{row[1]}-{row[2].replace(' ', '_')}" for row in ROWS],
)
def test_untrusted_repo(tmp_path, hub_cache, modules_cache, break_repo, loader, source, expect):
    repo, marker = tmp_path / "repo", tmp_path / "executed.txt"
    make_tiny_pipeline().save_pretrained(repo)
    if LOADERS[loader].published:
        remote_code.add_remote_code(repo)
    break_repo(repo, marker)
    where = repo
    if source == "hub id":
        build_hub_cache(hub_cache, HUB_REPO_ID, repo)
        where = HUB_REPO_ID

    if expect.error is None:
        loaded = LOADERS[loader].load(where)
        if not expect.ran:
            assert all(c.__module__.startswith("indi_pipeline.") for c in _classes(loaded)), _classes(loaded)
    else:
        with pytest.raises(expect.error) as info:
            LOADERS[loader].load(where)
        for fragment in expect.says:
            assert fragment in str(info.value), f"{fragment!r} not in: {info.value}"
    ran = marker.read_text().split() if marker.exists() else []
    assert sorted(ran) == sorted(expect.ran.split()), f"repo code ran: {ran}"


def test_use_safetensors_false_is_refused(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="safetensors weights only"):
        InDINet.from_pretrained(tmp_path, subfolder="unet", use_safetensors=False)


def test_output_loading_info_still_works(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path)
    net, info = InDINet.from_pretrained(tmp_path, subfolder="unet", output_loading_info=True)
    assert isinstance(net, InDINet) and not info["missing_keys"] and not info["unexpected_keys"]
