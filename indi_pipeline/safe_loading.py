"""Loading a model repo that may be broken or hostile: safetensors only, and a clear message for each way it can be
wrong (design.md §3: weights are safetensors, never pickles).

diffusers' ``ModelMixin.from_pretrained``, left alone, (1) falls back to pickled ``.bin`` weights when a folder has no
safetensors, (2) says only "Unable to load weights from checkpoint file" for a truncated safetensors file (the reason,
safetensors' header error, is dropped), (3) loads weights that lack some of the network's parameters as a network
holding uninitialised (meta) tensors, with a warning only, and (4) ignores a config.json written for another class.
`SafetensorsOnlyLoading` closes those for InDINet; `SafePipelineLoading` does the same for the pipeline (with the
folder checks for its own messages) and sets a published repo's generated code aside.
"""

from __future__ import annotations

import importlib
import json
import struct
import sys
from pathlib import Path

import torch

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
LISTED_NAMES = 5  # at most this many parameter names in one message


def find_local_folder(
    name_or_path, subfolder: str | None = None, cache_dir=None, revision=None, filename: str = "config.json"
) -> Path | None:
    """A repo's folder on disk: the folder itself, or a repo id's cached Hub snapshot holding ``filename``; else None."""
    folder = Path(str(name_or_path))
    if folder.is_dir():
        return folder / subfolder if subfolder else folder
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(
            str(name_or_path),
            f"{subfolder}/{filename}" if subfolder else filename,
            cache_dir=cache_dir,
            revision=revision,
        )
    except ValueError:  # not a valid repo id either
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def refuse_pickle_option(kwargs: dict, owner: str) -> None:
    """Takes ``use_safetensors`` out of from_pretrained's ``kwargs`` (the loaders always pass True): False is refused."""
    if kwargs.pop("use_safetensors", None) is False:
        raise ValueError(f"{owner} loads safetensors weights only; use_safetensors=False (pickle) is refused")


def missing_safetensors_problem(folder: Path) -> str | None:
    """Says that a component folder (one with a config.json) has no safetensors weights, naming the pickles it has."""
    if not (folder / "config.json").is_file() or any(folder.glob("*.safetensors")):
        return None
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    found = f" (found {', '.join(pickles)}: pickle weights are never loaded)" if pickles else ""
    return f"'{folder.name}/' has no safetensors weights{found}; InDI loads safetensors only"


def read_safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file's header lists, after checking that the file is whole.

    Raises OSError naming the file and what is wrong: safetensors' own error for a cut-off file is a bare
    "MetadataIncompleteBuffer" or "invalid header", which diffusers replaces by "Unable to load weights".
    """

    def corrupt(reason: str) -> OSError:
        return OSError(
            f"{path} is truncated or corrupt: {reason}. It is not a complete safetensors file; "
            "download or copy it again"
        )

    size = path.stat().st_size
    with open(path, "rb") as file:
        start = file.read(8)
        if start.startswith(b"version "):
            raise OSError(f"{path} is a Git LFS pointer, not the weights: fetch them with `git lfs pull`")
        if len(start) < 8:
            raise corrupt(f"{size} bytes, fewer than a safetensors header needs")
        (header_size,) = struct.unpack("<Q", start)
        if header_size > size - 8:
            raise corrupt(f"its header claims {header_size} bytes but the file has {size}")
        try:
            header = json.loads(file.read(header_size))
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            shapes = {k: tuple(int(n) for n in v["shape"]) for k, v in tensors.items()}
            data_end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            raise corrupt(f"unreadable header ({type(error).__name__}: {error})") from None
    data_size = size - 8 - header_size
    if data_end > data_size:
        raise corrupt(f"its header lists {data_end} bytes of tensor data but the file holds {data_size}")
    if data_end < data_size:
        raise corrupt(f"{data_size - data_end} stray bytes follow the last tensor")
    return shapes


def _listed(items: list[str]) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > LISTED_NAMES else ""
    return ", ".join(items[:LISTED_NAMES]) + more


def weights_mismatch_problem(expected: dict[str, tuple], found: dict[str, tuple], where: str) -> str | None:
    """Says how the tensors of a weights file (``found``) differ from the network's parameters (``expected``, in the
    network's order, so that the first one named is the first layer that differs)."""
    mismatched = [
        f"{k} has shape {tuple(found[k])} in the file but {tuple(v)} in the network"
        for k, v in expected.items()
        if k in found and tuple(found[k]) != tuple(v)
    ]
    missing = [k for k in expected if k not in found]
    unexpected = sorted(set(found) - set(expected))
    parts = []
    if mismatched:
        parts.append(_listed(mismatched))
    if missing:
        parts.append(f"parameters missing from the file: {_listed(missing)}")
    if unexpected:
        parts.append(f"tensors the network does not have: {_listed(unexpected)}")
    if not parts:
        return None
    return (
        f"{where}: the weights do not fit the network that config.json describes ({'; '.join(parts)}); "
        "the weights and config.json come from different networks"
    )


def weights_problem(model_class, folder: Path) -> Exception | None:
    """What is wrong with a component folder's weights, as the exception to raise; None when nothing is found."""
    problem = missing_safetensors_problem(folder)
    if problem is not None:
        return OSError(f"{folder.parent}: {problem}")
    found = {}
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            found.update(read_safetensors_shapes(weights))
        except OSError as error:
            return error
    try:
        config = json.loads((folder / "config.json").read_text())
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            network = model_class.from_config(config)
    except Exception:  # a config this class cannot build: leave the loader's own error
        return None
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    problem = weights_mismatch_problem(expected, found, str(folder))
    return ValueError(problem) if problem else None


class SafetensorsOnlyLoading:
    """Mixin for a diffusers ``ModelMixin`` network (list it first among the bases): ``from_pretrained`` reads
    safetensors only and fails with a message that names the file and the problem for a repo whose weights are
    pickles, cut off, or of another shape than config.json describes, or whose config.json names another class.
    """

    @classmethod
    def load_config(cls, pretrained_model_name_or_path, *args, **kwargs):
        result = super().load_config(pretrained_model_name_or_path, *args, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        named = config.get("_class_name")
        if named is not None and named not in {klass.__name__ for klass in cls.__mro__}:
            where = Path(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "", cls.config_name)
            raise ValueError(
                f"{where} names the class {named!r}, not {cls.__name__}: this folder holds another "
                f"network (or a broken config), and {cls.__name__} does not load it"
            )
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        refuse_pickle_option(kwargs, cls.__name__)
        return_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, use_safetensors=True, output_loading_info=True, **kwargs
            )
        except (OSError, ValueError, RuntimeError) as error:
            problem = cls._weights_problem(pretrained_model_name_or_path, kwargs)
            if problem is None:
                raise
            raise problem from error
        if info["missing_keys"] or info["unexpected_keys"]:
            # diffusers only warns, and leaves the missing parameters as meta tensors that fail at the first call.
            raise cls._weights_problem(pretrained_model_name_or_path, kwargs) or ValueError(
                f"{pretrained_model_name_or_path}: the weights do not fit the network that config.json describes "
                f"(missing: {_listed(sorted(info['missing_keys']))}; extra: {_listed(sorted(info['unexpected_keys']))})"
            )
        return (model, info) if return_info else model

    @classmethod
    def _weights_problem(cls, name_or_path, kwargs) -> Exception | None:
        folder = find_local_folder(
            name_or_path, kwargs.get("subfolder"), kwargs.get("cache_dir"), kwargs.get("revision"), cls.config_name
        )
        return None if folder is None or not folder.is_dir() else weights_problem(cls, folder)


class SafePipelineLoading:
    """The loading overrides of InDIPipeline (mixed in before ``DiffusionPipeline``): safetensors only, a message
    that names what a broken repo lacks, a published repo's generated code set aside, and a Hub download that
    fetches configs and weights only."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        r"""Loads a pipeline from a local folder or a Hub repo id, like [`~DiffusionPipeline.from_pretrained`].

        Weights are safetensors only (design.md §3): ``use_safetensors`` is always True, so a repo that holds only
        pickled weights (``.bin``) is refused, never unpickled. A load failure caused by a missing component folder
        or missing safetensors weights is re-raised with a message that says which; the network's own loader
        (`InDINet.from_pretrained`, see `safe_loading`) names a truncated weights file, weights that do not fit
        config.json, and a config.json written for another class. No code from the repo runs unless the caller
        passes ``trust_remote_code=True`` (and a published repo's generated code never does: see `load_config`).
        """
        refuse_pickle_option(kwargs, cls.__name__)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, use_safetensors=True, **kwargs)
        except OSError as error:
            problem = cls._diagnose_repo(pretrained_model_name_or_path, kwargs)
            if problem is None:
                raise
            raise OSError(problem) from error

    @classmethod
    def load_config(cls, *args, **kwargs):
        """Reads model_index.json like [`~ConfigMixin.load_config`], with a published repo's generated code set aside.

        `train/publish.py` adds code generated from this package to an uploaded repo so that diffusers alone can load
        it with ``trust_remote_code=True``: ``_class_name`` becomes ``["pipeline_indi", "InDIPipeline"]`` and
        ``unet/indi_pipeline.network.py`` sits next to the weights. diffusers would run those files (or refuse to
        load without ``trust_remote_code``) even for this class. This class and the installed package are that code:
        the pipeline class stays ``cls``, and this package's components are named by the package itself, because
        diffusers runs ``<component>/<library>.py`` whenever that file exists.
        """
        result = super().load_config(*args, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        if isinstance(config.get("_class_name"), (list, tuple)):
            config["_class_name"] = config["_class_name"][-1]
        package_name = __name__.split(".")[0]
        package = sys.modules.get(package_name)
        for name, entry in config.items():
            if name.startswith("_") or not isinstance(entry, (list, tuple)) or len(entry) != 2:
                continue
            library, class_name = entry
            if not isinstance(library, str) or not library.startswith(package_name + "."):
                continue
            try:  # a module of this installed package (never the repo's code); the package imports it lazily
                component_module = importlib.import_module(library)
            except ImportError:
                continue
            component_class = getattr(component_module, str(class_name), None)
            if component_class is not None and getattr(package, class_name, None) is component_class:
                config[name] = [package_name, class_name]
        return result

    @classmethod
    def download(cls, pretrained_model_name, **kwargs) -> str:
        """Fetches a Hub repo's configs and safetensors weights (nothing else) and returns its local snapshot folder.

        Replaces `DiffusionPipeline.download`, which refuses any repo whose model_index.json names a component
        module outside diffusers (as ``["indi_pipeline.network", "InDINet"]``) once it knows the repo's file
        listing, i.e. always online (diffusers issue #6563), although the same folder loads fine from disk.
        """
        from huggingface_hub import snapshot_download

        hub_kwargs = ("cache_dir", "force_download", "local_files_only", "token", "revision")
        return snapshot_download(
            pretrained_model_name,
            allow_patterns=[cls.config_name, "*/*.json", "*/*.safetensors"],
            user_agent={"pipeline_class": cls.__name__},
            **{k: kwargs[k] for k in hub_kwargs if kwargs.get(k) is not None},
        )

    @classmethod
    def _diagnose_repo(cls, name_or_path, kwargs) -> str | None:
        """Says what is missing from a pipeline repo (local folder or cached Hub snapshot), or None if unsure."""
        folder = find_local_folder(name_or_path, None, kwargs.get("cache_dir"), kwargs.get("revision"), cls.config_name)
        if folder is None:
            return None
        try:
            index = json.loads((folder / cls.config_name).read_text())
        except (OSError, ValueError):
            return None
        for name, entry in index.items():
            if name.startswith("_") or not isinstance(entry, list) or entry[0] is None or name in kwargs:
                continue
            sub = folder / name
            if not sub.is_dir():
                return (
                    f"{name_or_path}: model_index.json lists a '{name}' component ({entry[1]}) but the repo has no "
                    f"'{name}/' folder; an InDI repo needs model_index.json, scheduler/ and unet/"
                )
            problem = missing_safetensors_problem(sub)
            if problem is not None:
                return f"{name_or_path}: {problem}"
        return None
