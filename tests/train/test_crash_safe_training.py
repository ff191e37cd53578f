"""Crash-safe training (issue 7): a kill -9 in the middle of a checkpoint save leaves the last complete checkpoint to
resume from, and a run whose loss turns NaN stops with a message, keeps its last good checkpoint and writes no NaN
weights anywhere. Data, flags and helpers come from tests/helpers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import FAST, ROOT, SCRIPT, TINY, assert_fp16_repo, info, subprocess_env
from safetensors.torch import load_file

# Runs train_indi.main, except that the second checkpoint save stalls halfway: accelerate has written the model,
# optimizer and RNG states into the temporary folder but not yet the LR-scheduler and EMA states. There it writes the
# marker file and sleeps, for the test to kill it. Nothing in train_indi.py knows about this.
STALLING_RUN = r"""
import importlib.util, sys, time
from pathlib import Path

import accelerate.accelerator

marker, script, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
save_custom_state, folders = accelerate.accelerator.save_custom_state, []


def stalling_save_custom_state(obj, path, *args, **kwargs):
    if path not in folders:
        folders.append(path)
    if len(folders) == 2:
        marker.write_text(str(path))
        time.sleep(600)
    return save_custom_state(obj, path, *args, **kwargs)


accelerate.accelerator.save_custom_state = stalling_save_custom_state
spec = importlib.util.spec_from_file_location("train_indi", script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.main(argv)
"""


def common_args(clean_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--task",
        "denoise",
        "--train_data_dir",
        str(clean_dir),
        "--output_dir",
        str(out),
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "3",
        "--report_to",
        "none",
        *FAST,
        *TINY,
        *extra,
    ]


@pytest.mark.slow
def test_kill_during_checkpoint_save_then_resume_latest(tmp_path, clean_dir, train_indi):
    out, marker = tmp_path / "out", tmp_path / "stalled.txt"
    (tmp_path / "stalling_run.py").write_text(STALLING_RUN)
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "stalling_run.py"),
                str(marker),
                str(SCRIPT),
                *common_args(clean_dir, out, "--max_train_steps", "6"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 180
            while not marker.exists():
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the second checkpoint save never started"
                time.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # Killed while writing checkpoint-4: a half-written temporary folder, never counted as a checkpoint.
    half = out / ".tmp-checkpoint-4"
    assert Path(marker.read_text()) == half
    assert (half / "model.safetensors").is_file() and not (half / "train_state.json").exists()
    assert not (out / "checkpoint-4").exists()
    assert [p.name for p in train_indi.list_checkpoints(out)] == ["checkpoint-2"]
    complete = {p.name for p in (out / "checkpoint-2").iterdir()}
    assert {"model.safetensors", "optimizer.bin", "train_state.json", "custom_checkpoint_0.pkl"} <= complete
    assert not (out / "train_info.json").exists() and not (out / "model_index.json").exists()

    # A second killed attempt that died saving another step leaves its own temporary folder behind.
    other_half = out / ".tmp-checkpoint-3"
    shutil.copytree(half, other_half)
    train_indi.main(common_args(clean_dir, out, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"))
    data = info(out)
    assert data["resumed_from"] == {"checkpoint": "checkpoint-2", "global_step": 2, "optimizer_step": 2}
    assert data["global_step"] == 4 and data["stop_reason"] == "max_train_steps"
    assert [p.name for p in train_indi.list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    assert not half.exists()  # the resumed run's save of step 4 replaced the half-written folder
    assert not other_half.exists()  # and a successful save clears every leftover of a killed save
    assert_fp16_repo(out)


# --------------------------------------------------------------------------------------------------------- NaN
def poison_network(monkeypatch, train_indi, from_call: int) -> None:
    """From its ``from_call``-th forward on, the network predicts NaN (so the loss, and after it the weights, go NaN)."""
    build_model = train_indi.build_model

    def build_poisoned_model(args):
        model, calls = build_model(args), []
        forward = model.forward

        def nan_forward(*inputs, **kwargs):
            output = forward(*inputs, **kwargs)
            calls.append(None)
            return type(output)(sample=output.sample * float("nan")) if len(calls) >= from_call else output

        model.forward = nan_forward
        return model

    monkeypatch.setattr(train_indi, "build_model", build_poisoned_model)


def assert_finite_checkpoint(checkpoint: Path) -> None:
    weights = load_file(checkpoint / "model.safetensors")
    assert weights and all(torch.isfinite(w).all() for w in weights.values()), checkpoint
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=False)  # EMA state (written by us)
    assert all(torch.isfinite(p).all() for p in ema["shadow_params"]), checkpoint


@pytest.mark.parametrize(
    "logging_steps, nan_step, detected_at, last_good",
    [
        (1, 5, 5, 4),  # the loss is read every step: the run stops at the first NaN step
        (5, 3, 4, 2),  # the loss is read at step 5 only, but a checkpoint is due at step 4: checked there first
    ],
)
def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path,
    clean_dir,
    train_indi,
    monkeypatch,
    capsys,
    logging_steps,
    nan_step,
    detected_at,
    last_good,
):
    out = tmp_path / "out"
    # A first run leaves a finished model repo in the output folder; the run that diverges resumes from it.
    train_indi.main(common_args(clean_dir, out, "--max_train_steps", "2"))
    weights_before = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    info_before = (out / "train_info.json").read_bytes()

    poison_network(monkeypatch, train_indi, from_call=nan_step - 2)
    with pytest.raises(SystemExit) as exit_info:
        train_indi.main(
            common_args(
                clean_dir,
                out,
                "--max_train_steps",
                "10",
                "--resume_from_checkpoint",
                "latest",
                "--logging_steps",
                str(logging_steps),
            )
        )
    assert exit_info.value.code not in (0, None)
    message = capsys.readouterr().out
    assert f"loss became nan at step {nan_step}" in message
    assert f"checkpoint-{last_good}" in message

    checkpoints = train_indi.list_checkpoints(out)
    assert checkpoints[-1].name == f"checkpoint-{last_good}"
    assert not list(out.glob(".tmp-checkpoint-*"))
    for checkpoint in checkpoints:
        assert_finite_checkpoint(checkpoint)
    # The model repo of the first run is left as it was, never replaced by NaN weights.
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == weights_before
    assert (out / "train_info.json").read_bytes() == info_before  # and so is the record of how it was trained
    data = json.loads((out / "train_info_diverged.json").read_text())
    assert data["global_step"] == detected_at and data["stop_reason"] == f"loss became nan at step {nan_step}"

    # The last good checkpoint loads and training goes on from it.
    monkeypatch.undo()
    train_indi.main(
        common_args(clean_dir, out, "--max_train_steps", str(last_good + 1), "--resume_from_checkpoint", "latest")
    )
    data = info(out)
    assert data["resumed_from"]["checkpoint"] == f"checkpoint-{last_good}" and data["global_step"] == last_good + 1
    assert all(
        torch.isfinite(w).all() for w in load_file(out / "unet" / "diffusion_pytorch_model.safetensors").values()
    )
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "InDIPipeline"
