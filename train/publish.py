#!/usr/bin/env python
"""Publish an InDI model repo folder (model_cards/indi-<task>/) to the Hugging Face Hub.

Builds a staging folder = the repo's files that belong on the Hub (model card, model_index.json, the component
folders' configs and safetensors weights, eval_*.json/md/png, train_info.json) plus remote code generated from the
installed indi_pipeline (train/remote_code.py), so that the uploaded repo serves both kinds of users:

    InDIPipeline.from_pretrained("org/indi-denoise")                                  # indi_pipeline installed
    DiffusionPipeline.from_pretrained("org/indi-denoise", trust_remote_code=True)     # only diffusers installed

Before anything is uploaded, the model card's metadata is validated locally and the folder is checked for pickle
weights (refused: design.md §3). ``--dry_run`` stops after listing what would be uploaded; the staging folder it
writes (``--staging_dir``) is exactly what a real run uploads and can be loaded to test it.

    python -m train.publish model_cards/indi-denoise --repo_id my-org/indi-denoise --dry_run --staging_dir /tmp/stage
    python -m train.publish model_cards/indi-denoise --repo_id my-org/indi-denoise      # needs `hf auth login`
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

from train import remote_code

CARD_NAME = "README.md"
INDEX_NAME = "model_index.json"
# Top-level files that belong on the Hub besides the card and model_index.json.
TOP_LEVEL_PATTERNS = ("eval_*.json", "eval_*.md", "eval_*.png", "floor_check.json", "speed.json", "train_info.json")
# Files a component folder may contribute (configs and weights; weights are safetensors only).
COMPONENT_PATTERNS = ("*.json", "*.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Training by-products that stay home without comment.
SKIPPED_DIRS = ("checkpoint-*", "logs", ".git", ".cache", "__pycache__", ".ipynb_checkpoints")

REQUIRED_METADATA = {"library_name": "diffusers", "pipeline_tag": "image-to-image"}
REQUIRED_TAG = "indi"


class PublishError(RuntimeError):
    """The repo folder is not fit to publish; the message says why."""


@dataclass
class StagedFile:
    path: str  # relative, POSIX
    size: int
    generated: bool = False


# ------------------------------------------------------------------------------------------------------ file plan
def _skipped_dir(rel: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.parts[:-1] for pattern in SKIPPED_DIRS)


def plan_files(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Splits a repo folder's files into those to upload and those left out (with the reason).

    Raises PublishError when pickle weights would be published, or model_index.json / a component folder is missing.
    """
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        raise PublishError(f"{folder}: no {INDEX_NAME}; is this a saved InDI pipeline folder?")
    try:
        model_index = json.loads(index_path.read_text())
    except ValueError as error:
        raise PublishError(f"{index_path}: not valid JSON ({error})") from error
    components = {k for k, v in model_index.items() if not k.startswith("_") and isinstance(v, list) and v[0]}
    missing = sorted(c for c in components if not (folder / c).is_dir())
    if missing:
        raise PublishError(f"{folder}: {INDEX_NAME} lists components {missing} that have no folder")

    upload, skipped, pickles = [], [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder)
        if _skipped_dir(rel):
            skipped.append((rel, "training by-product"))
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES:
            pickles.append(rel.as_posix())
            continue
        if len(rel.parts) == 1:
            keep = rel.name in (CARD_NAME, INDEX_NAME) or any(fnmatch.fnmatch(rel.name, p) for p in TOP_LEVEL_PATTERNS)
        else:
            keep = len(rel.parts) == 2 and rel.parts[0] in components
            keep = keep and any(fnmatch.fnmatch(rel.name, p) for p in COMPONENT_PATTERNS)
        if keep:
            upload.append(rel)
        else:
            reason = "code is generated at publish time" if path.suffix == ".py" else "not part of a model repo"
            skipped.append((rel, reason))
    if pickles:
        raise PublishError(
            f"{folder}: refusing to publish pickle files {pickles}: InDI repos hold safetensors weights only "
            "(design.md §3). Convert them (save_pretrained writes safetensors) and delete the pickles."
        )
    for component in sorted(components):
        if not any(rel.parts[0] == component and rel.suffix == ".safetensors" for rel in upload):
            if (folder / component / "config.json").is_file():
                raise PublishError(f"{folder}: '{component}/' has a config.json but no safetensors weights")
    return upload, skipped


# --------------------------------------------------------------------------------------------------- card checks
def _is_finite_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_card(folder: Path, task: str | None = None):
    """Loads README.md with huggingface_hub and checks the metadata the Hub and the zoo rely on.

    Returns the ModelCard; raises PublishError naming every problem found.
    """
    from huggingface_hub import ModelCard

    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise PublishError(f"{card_path}: missing: write the model card first (train/make_model_card.py)")
    try:
        card = ModelCard.load(card_path)
    except Exception as error:  # huggingface_hub raises ValueError / yaml errors for broken metadata
        raise PublishError(f"{card_path}: the card's metadata cannot be parsed: {error}") from error
    data = card.data
    problems = []
    for key, expected in REQUIRED_METADATA.items():
        value = getattr(data, key, None)
        if value != expected:
            wrong = f"{key} is {value!r}, expected {expected!r}"
            problems.append(wrong if value else f"{key} is missing ({expected!r})")
    if not data.license:
        problems.append("license is missing")
    tags = list(data.tags or [])
    if REQUIRED_TAG not in tags:
        problems.append(f"tags {tags} do not include {REQUIRED_TAG!r}")
    if task and task not in tags:
        problems.append(f"tags {tags} do not include the task {task!r} of model_index.json")
    results = data.eval_results or []
    if not results:
        problems.append("model-index (evaluation results) is missing")
    for result in results:
        if not _is_finite_number(result.metric_value):
            problems.append(
                f"model-index: metric {result.metric_name or result.metric_type!r} of dataset "
                f"{result.dataset_name!r} has value {result.metric_value!r}, not a finite number"
            )
    if problems:
        raise PublishError(f"{card_path}: model card metadata problems:\n  - " + "\n  - ".join(problems))
    return card


# ------------------------------------------------------------------------------------------------------- staging
def build_staging(folder: str | Path, staging_dir: str | Path) -> tuple[list[StagedFile], list[tuple[Path, str]]]:
    """Validates ``folder`` and writes what would be uploaded into ``staging_dir`` (new or empty)."""
    folder, staging = Path(folder), Path(staging_dir)
    if not folder.is_dir():
        raise PublishError(f"{folder}: not a folder")
    if staging.resolve() == folder.resolve() or folder.resolve() in staging.resolve().parents:
        raise PublishError(f"staging folder {staging} must lie outside the repo folder {folder}")
    if staging.exists() and (not staging.is_dir() or any(staging.iterdir())):
        raise PublishError(f"staging folder {staging} exists and is not empty; give a new or empty folder")
    upload, skipped = plan_files(folder)
    task = json.loads((folder / INDEX_NAME).read_text()).get("task")
    validate_card(folder, task=task)

    staging.mkdir(parents=True, exist_ok=True)
    for rel in upload:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, staging / rel)  # follows symlinks: the Hub gets real files
    try:
        generated = remote_code.add_remote_code(staging)
    except remote_code.RemoteCodeError as error:
        raise PublishError(f"cannot generate the remote code: {error}") from error
    generated_rel = {p.relative_to(staging).as_posix() for p in generated} - {INDEX_NAME}
    relative = [p.relative_to(staging).as_posix() for p in sorted(staging.rglob("*")) if p.is_file()]
    files = [StagedFile(rel, (staging / rel).stat().st_size, rel in generated_rel) for rel in relative]
    return files, skipped


def format_listing(files: list[StagedFile], skipped: list[tuple[Path, str]]) -> str:
    width = max(len(f.path) for f in files)
    lines = [f"  {f.path:<{width}}  {f.size:>12,d} B" + ("  (generated)" if f.generated else "") for f in files]
    lines.append(f"  {len(files)} files, {sum(f.size for f in files):,d} bytes")
    if skipped:
        lines.append("left out:")
        lines += [f"  {rel.as_posix()}  ({reason})" for rel, reason in skipped]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- upload
def upload(staging: Path, args) -> str:
    import huggingface_hub

    huggingface_hub.create_repo(args.repo_id, repo_type="model", private=args.private, exist_ok=True, token=args.token)
    if args.revision:
        huggingface_hub.create_branch(args.repo_id, branch=args.revision, exist_ok=True, token=args.token)
    commit = huggingface_hub.upload_folder(
        repo_id=args.repo_id,
        folder_path=str(staging),
        repo_type="model",
        revision=args.revision,
        token=args.token,
        commit_message=args.commit_message or f"Upload InDI model (indi_pipeline {remote_code.package_version()})",
        # Mirror the staging folder: files of an earlier upload that are gone now are deleted in the same commit
        # (huggingface_hub never deletes .gitattributes).
        delete_patterns=None if args.keep_remote_files else ["*"],
    )
    return str(getattr(commit, "commit_url", commit))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Publish an InDI model repo folder to the Hugging Face Hub.")
    parser.add_argument("repo_folder", help="Model repo folder, e.g. model_cards/indi-denoise.")
    parser.add_argument("--repo_id", required=True, help="Hub repo id, ORG/NAME.")
    parser.add_argument(
        "--dry_run", action="store_true", help="Validate and list what would be uploaded; upload nothing."
    )
    parser.add_argument(
        "--staging_dir",
        default=None,
        help="New or empty folder for the upload's files (kept). Default: a temporary folder, removed at the end.",
    )
    parser.add_argument("--revision", default=None, help="Branch to upload to (created if missing). Default: main.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private (if it does not exist).")
    parser.add_argument("--token", default=None, help="Hub token. Default: the one saved by `hf auth login`.")
    parser.add_argument(
        "--commit_message", default=None, help="Commit message. Default names the indi_pipeline version."
    )
    parser.add_argument(
        "--keep_remote_files",
        action="store_true",
        help="Keep files already on the Hub that this upload lacks (default: delete them, mirroring the folder).",
    )
    args = parser.parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        parser.error(f"--repo_id must be ORG/NAME, got {args.repo_id!r}")
    return args


def main(argv=None) -> list[StagedFile]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="indi-publish-") as tmp:
        staging = Path(args.staging_dir) if args.staging_dir else Path(tmp) / "staging"
        try:
            files, skipped = build_staging(args.repo_folder, staging)
        except PublishError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{args.repo_folder} -> {args.repo_id}: model card OK; files to upload (staged in {staging}):")
        print(format_listing(files, skipped))
        if args.dry_run:
            print("dry run: nothing uploaded")
            return files
        print(f"uploaded: {upload(staging, args)}")
        return files


if __name__ == "__main__":
    main()
