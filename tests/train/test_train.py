"""Tests for train/train_indi.py (issue 3): tiny data in tmp folders, a tiny network, a few steps, offline.

Process launches are the slow part (importing torch + diffusers takes ~10 s on the shared 2-core machine), so only
three tests start processes: one plain single-process run, one two-process gloo run under `accelerate launch`, and
a run that is killed with SIGKILL after a checkpoint. Everything else calls the script's ``main(argv)`` in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    FAST,
    MODULE,
    ROOT,
    TINY,
    assert_fp16_repo,
    info,
    make_folder,
    make_pairs,
    subprocess_env,
    texture,
)
from PIL import Image


# ---------------------------------------------------------------------------------------------------------- helpers
# Those that test_crash_safe_training.py and test_device_crops.py share are in tests/helpers.py.
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_script(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", MODULE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        cwd=ROOT,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def assert_restores(out: Path, size=(40, 36), factor: int = 1) -> None:
    """The repo loads with InDIPipeline.from_pretrained and restores an odd-sized image to the right size."""
    from indi_pipeline import InDIPipeline

    pipe = InDIPipeline.from_pretrained(str(out), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    image = texture(5, 48).crop((0, 0, *size))
    restored = pipe(image, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert restored.size == (size[0] * factor, size[1] * factor)
    array = np.asarray(restored)
    assert array.dtype == np.uint8 and array.std() > 0


# -------------------------------------------------------------------------------------------------- 1. one process
@pytest.mark.slow
def test_single_process_writes_loadable_fp16_repo(tmp_path, clean_dir):
    out = tmp_path / "out"
    run_script(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "3",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert_fp16_repo(out)
    data = info(out)
    assert data["world_size"] == 1 and data["global_step"] == 3 and data["stop_reason"] == "max_train_steps"
    assert data["resumed_from"] is None
    assert data["images_per_second_median"] > 0
    assert all(np.isfinite(h["loss"]) for h in data["history"] if "loss" in h)
    assert_restores(out)


# ------------------------------------------------------------------------------------------ 2. two processes, gloo
@pytest.mark.slow
def test_two_cpu_processes_gloo(tmp_path, clean_dir):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        MODULE,
        "--task",
        "sr4",
        "--train_data_dir",
        str(clean_dir),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "2",
        "--report_to",
        "none",
        *FAST,
        *TINY,
    ]
    env = subprocess_env()
    env["ACCELERATE_USE_CPU"] = "1"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "world size 2" in log
    data = info(out)
    assert data["world_size"] == 2 and data["global_step"] == 2 and data["crop_sampler"] == "device"
    # both ranks took part in the checkpoint (one RNG state file each)
    assert {p.name for p in (out / "checkpoint-2").glob("random_states_*.pkl")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    assert_fp16_repo(out)
    assert json.loads((out / "model_index.json").read_text())["upscale_factor"] == 4
    assert_restores(out, size=(12, 10), factor=4)


# ---------------------------------------------------------------------------------------------- 3. checkpoints
def test_resume_latest_restores_step_and_optimizer_state(tmp_path, clean_dir, train_indi):
    out = tmp_path / "out"
    common = [
        "--task",
        "denoise",
        "--train_data_dir",
        str(clean_dir),
        "--output_dir",
        str(out),
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "2",
        "--report_to",
        "none",
        *FAST,
        *TINY,
    ]
    train_indi.main([*common, "--max_train_steps", "4"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert info(out)["resumed_from"] is None
    saved = torch.load(out / "checkpoint-4" / "optimizer.bin", weights_only=True)
    assert {int(s["step"]) for s in saved["state"].values()} == {4}

    train_indi.main([*common, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"])
    data = info(out)
    assert data["resumed_from"] == {"checkpoint": "checkpoint-4", "global_step": 4, "optimizer_step": 4}
    assert data["global_step"] == 6
    assert [h["step"] for h in data["history"] if "loss" in h] == [5, 6]
    # total limit 2: checkpoint-2 was removed when checkpoint-6 came
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    resumed = torch.load(out / "checkpoint-6" / "optimizer.bin", weights_only=True)
    assert {int(s["step"]) for s in resumed["state"].values()} == {6}
    state = json.loads((out / "checkpoint-6" / "train_state.json").read_text())
    assert state["global_step"] == 6
    assert_fp16_repo(out)


def test_resume_from_missing_checkpoint_starts_fresh(tmp_path, clean_dir, train_indi):
    out = tmp_path / "out"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "1",
            "--resume_from_checkpoint",
            "latest",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert info(out)["resumed_from"] is None and info(out)["global_step"] == 1


@pytest.mark.slow
def test_kill_after_checkpoint_then_resume_latest(tmp_path, clean_dir, train_indi):
    out = tmp_path / "out"
    common = [
        "--task",
        "denoise",
        "--train_data_dir",
        str(clean_dir),
        "--output_dir",
        str(out),
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "2",
        "--report_to",
        "none",
        *FAST,
        *TINY,
    ]
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, *common, "--max_train_steps", "100000"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 150
        while not (out.exists() and train_indi.list_checkpoints(out)):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "train_info.json").exists() and not (out / "model_index.json").exists()

    checkpoints = train_indi.list_checkpoints(out)
    n = int(checkpoints[-1].name.split("-")[1])
    assert n >= 2 and n % 2 == 0
    # What a kill in the middle of a save leaves behind: a newer temporary folder. It must never be resumed from.
    stray = out / f".tmp-checkpoint-{n + 1000}"
    stray.mkdir(exist_ok=True)
    (stray / "train_state.json").write_text(json.dumps({"global_step": n + 1000, "elapsed_seconds": 0.0}))
    assert train_indi.list_checkpoints(out)[-1].name == f"checkpoint-{n}"

    train_indi.main([*common, "--max_train_steps", str(n + 2), "--resume_from_checkpoint", "latest"])
    data = info(out)
    assert data["resumed_from"] == {"checkpoint": f"checkpoint-{n}", "global_step": n, "optimizer_step": n}
    assert data["global_step"] == n + 2
    assert_fp16_repo(out)


# ---------------------------------------------------------------------------------------------- 4. real pairs
def test_paired_data_dir_trains(tmp_path, train_indi):
    pairs = make_pairs(tmp_path / "pairs")
    out = tmp_path / "out"
    train_indi.main(
        [
            "--task",
            "jpeg",
            "--paired_data_dir",
            str(pairs),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "2",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert_fp16_repo(out)
    assert info(out)["global_step"] == 2
    assert_restores(out)


def test_paired_sr_accepts_low_resolution_degraded(tmp_path, train_indi):
    pairs = tmp_path / "pairs"
    make_pairs(pairs)
    for path in (pairs / "degraded").iterdir():
        Image.open(path).resize((20, 20), Image.BICUBIC).save(path)
    images = train_indi.load_paired_folder(pairs, 64, upscale_factor=4)
    assert len(images) == 3 and all(c.shape == d.shape == (80, 80, 3) for c, d in images)


def _expect_data_error(train_indi, capsys, argv) -> str:
    with pytest.raises(SystemExit) as excinfo:
        train_indi.main(argv)
    assert excinfo.value.code not in (0, None)
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_paired_mismatched_names_named(tmp_path, train_indi, capsys):
    pairs = make_pairs(tmp_path / "pairs", names=("a", "b", "c"), degraded_names=("a", "b", "zz"))
    out = tmp_path / "out"
    message = _expect_data_error(
        train_indi,
        capsys,
        [
            "--task",
            "jpeg",
            "--paired_data_dir",
            str(pairs),
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ],
    )
    assert "clean/c.png" in message and "degraded/zz.png" in message
    assert "a.png" not in message.replace("zz", "")  # matched pairs are not listed
    assert not (out / "model_index.json").exists()


def test_paired_empty_folder_named(tmp_path, train_indi, capsys):
    pairs = make_pairs(tmp_path / "pairs")
    for path in (pairs / "degraded").iterdir():
        path.unlink()
    (pairs / "degraded" / "notes.txt").write_text("not an image")
    message = _expect_data_error(
        train_indi,
        capsys,
        [
            "--task",
            "jpeg",
            "--paired_data_dir",
            str(pairs),
            "--output_dir",
            str(tmp_path / "out"),
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ],
    )
    assert str(pairs / "degraded") in message and "holds no images" in message


def test_empty_and_missing_clean_folder(tmp_path, train_indi, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--task", "denoise", "--output_dir", str(tmp_path / "out"), "--report_to", "none", *FAST, *TINY]
    message = _expect_data_error(train_indi, capsys, ["--train_data_dir", str(empty), *base])
    assert str(empty) in message and "holds no images" in message
    message = _expect_data_error(train_indi, capsys, ["--train_data_dir", str(tmp_path / "nope"), *base])
    assert str(tmp_path / "nope") in message and "does not exist" in message


def test_unreadable_and_too_small_images_named(tmp_path, train_indi, capsys):
    pairs = make_pairs(tmp_path / "pairs")
    (pairs / "clean" / "b.png").write_bytes(b"this is text, not a PNG\n" * 10)
    message = _expect_data_error(
        train_indi,
        capsys,
        [
            "--task",
            "jpeg",
            "--paired_data_dir",
            str(pairs),
            "--output_dir",
            str(tmp_path / "out"),
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ],
    )
    assert str(pairs / "clean" / "b.png") in message and "unreadable" in message
    assert "a.png" not in message and "c.png" not in message

    clean = make_folder(tmp_path / "clean")
    (clean / "broken.png").write_bytes(b"garbage")
    Image.new("RGB", (40, 90)).save(clean / "small.png")
    message = _expect_data_error(
        train_indi,
        capsys,
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean),
            "--output_dir",
            str(tmp_path / "out2"),
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ],
    )
    assert str(clean / "broken.png") in message and str(clean / "small.png") in message
    assert "smaller than the crop size 64" in message


def test_argument_errors(tmp_path, train_indi, capsys):
    base = ["--task", "denoise", "--output_dir", str(tmp_path / "out")]
    for argv, text in [
        ([*base, "--train_data_dir", "a", "--resolution", "48"], "multiple of 32"),  # the default net
        ([*base, "--train_data_dir", "a", "--resolution", "96", "--unshuffle", "4", "--width", "48"], "multiple of 64"),
        ([*base, "--train_data_dir", "a", "--resolution", "44", *TINY], "multiple of 8"),
        ([*base, "--train_data_dir", "a", "--unshuffle", "0"], "--unshuffle must be >= 1"),
        ([*base], "exactly one of"),
        ([*base, "--train_data_dir", "a", "--paired_data_dir", "b"], "exactly one of"),
        ([*base, "--train_data_dir", "a", "--push_to_hub"], "--hub_model_id"),
    ]:
        with pytest.raises(SystemExit) as excinfo:
            train_indi.parse_args(argv)
        assert excinfo.value.code == 2
        assert text in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ 5. datasets imagefolder
@pytest.mark.slow
def test_dataset_name_imagefolder_offline(tmp_path, clean_dir, train_indi, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    out = tmp_path / "out"
    train_indi.main(
        [
            "--task",
            "defocus_deblur",
            "--dataset_name",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "2",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert_fp16_repo(out)
    data = info(out)
    assert data["global_step"] == 2 and data["args"]["dataset_name"] == str(clean_dir)


# ------------------------------------------------------------------------------------------------ 6. push to hub
def test_push_to_hub_uploads_output_folder_without_checkpoints(tmp_path, clean_dir, train_indi, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    pytest.importorskip("tensorboard")
    calls = {}

    def fake_create_repo(repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def fake_upload_folder(**kwargs):
        folder = Path(kwargs["folder_path"])
        calls["upload_folder"] = kwargs
        calls["files_at_upload"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    monkeypatch.setattr(huggingface_hub, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)

    validation = tmp_path / "val"
    validation.mkdir()
    texture(9, 256).save(validation / "v.png")
    out = tmp_path / "out"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "1",
            "--report_to",
            "tensorboard",
            "--validation_data_dir",
            str(validation),
            "--validation_inference_steps",
            "2",
            "--push_to_hub",
            "--hub_model_id",
            "x/y",
            "--hub_token",
            "hf_secret_token",
            *FAST,
            *TINY,
            "--validation_steps",
            "2",
        ]
    )

    assert calls["create_repo"][0] == "x/y"
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "x/y" and Path(upload["folder_path"]) == out
    assert upload["token"] == "hf_secret_token"
    files = calls["files_at_upload"]
    assert any(f.startswith("checkpoint-") for f in files) and any(f.startswith("logs/") for f in files)
    uploaded = set(filter_repo_objects(files, ignore_patterns=upload["ignore_patterns"]))
    assert not any(f.startswith(("checkpoint-", ".tmp-checkpoint-", "logs/")) for f in uploaded)
    assert {
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "train_info.json",
    } <= uploaded
    # the token never lands in the files of the repo or in the tensorboard logs
    for path in out.rglob("*"):
        if path.is_file():
            assert b"hf_secret_token" not in path.read_bytes(), path
    data = info(out)
    assert any("validation" in h for h in data["history"])
    assert data["args"]["hub_token"] == "<redacted>"


# ------------------------------------------------------------------------------------------- 7. t_sampling "one"
def test_t_sampling_one_and_init_from(tmp_path, clean_dir, train_indi):
    out = tmp_path / "one"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--t_sampling",
            "one",
            "--loss",
            "l2",
            "--no-use_ema",
            "--max_train_steps",
            "2",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert_fp16_repo(out, t_sampling="one")
    assert info(out)["args"]["t_sampling"] == "one"

    # fine-tune from that repo: the network config comes from it (not from the size flags), and so do the inference
    # settings its card was evaluated with (step spacing); the training settings are the fine-tune's own
    scheduler_path = out / "scheduler" / "scheduler_config.json"
    spaced = {**json.loads(scheduler_path.read_text()), "timestep_spacing": "power", "spacing_power": 3.0}
    scheduler_path.write_text(json.dumps(spaced))
    tuned = tmp_path / "tuned"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(tuned),
            "--init_from",
            str(out),
            "--max_train_steps",
            "1",
            "--report_to",
            "none",
            *FAST,
        ]
    )
    assert json.loads((tuned / "unet" / "config.json").read_text())["width"] == 12
    tuned_scheduler = json.loads((tuned / "scheduler" / "scheduler_config.json").read_text())
    assert tuned_scheduler["timestep_spacing"] == "power" and tuned_scheduler["spacing_power"] == 3.0
    assert tuned_scheduler["t_sampling"] == "uniform"
    assert_fp16_repo(tuned)
    # the fine-tune's record carries the base's (without its loss history): the card can describe both stages
    base = info(tuned)["init_from_train_info"]
    assert base["args"]["t_sampling"] == "one" and base["global_step"] == 2 and "history" not in base
    assert info(out)["init_from_train_info"] is None

    # fine-tune a deeper net grown from that repo: the block flags add blocks, the rest of the config is the base's
    grown = tmp_path / "grown"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(grown),
            "--init_from",
            str(out),
            "--encoder_blocks",
            "2",
            "1",
            "--max_train_steps",
            "1",
            "--report_to",
            "none",
            *FAST,
        ]
    )
    config = json.loads((grown / "unet" / "config.json").read_text())
    assert config["width"] == 12 and config["encoder_blocks"] == [2, 1] and config["decoder_blocks"] == [1, 1]
    assert_fp16_repo(grown)


@pytest.mark.slow
def test_psnr_and_nmse_losses_weigh_every_image_alike_and_train(tmp_path, clean_dir, train_indi):
    from indi_pipeline.metrics import psnr

    clean = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)  # 20 and 40 dB; the 60 dB floor moves the mean by 0.02 dB
    signs = torch.randint(0, 2, clean.shape, generator=torch.Generator().manual_seed(1)) * 2.0 - 1.0
    error = (levels * signs).requires_grad_()
    loss = train_indi.clean_prediction_loss(error, "psnr")
    assert loss.item() == pytest.approx(-psnr(clean + error.detach(), clean).mean().item(), abs=0.03)
    # every image's relative error counts alike: the gradient per unit of error grows as 1 / error
    loss.backward()
    per_image = error.grad.abs().flatten(1).mean(1)
    assert (per_image[1] / per_image[0]).item() == pytest.approx(10.0, rel=0.02)
    # a perfect prediction stops at the floor: a finite loss and no pull
    perfect = torch.zeros(2, 3, 8, 8, requires_grad=True)
    floor_loss = train_indi.clean_prediction_loss(perfect, "psnr")
    floor_loss.backward()
    assert floor_loss.item() == pytest.approx(-60.0) and not perfect.grad.any()
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        train_indi.clean_prediction_loss(error, "l3")

    # nmse: each image's MSE over its degraded input's, so both images here (half their input's error) count alike
    error.grad = None
    input_error = 2 * error.detach()
    relative = train_indi.clean_prediction_loss(error, "nmse", input_error)
    assert relative.item() == pytest.approx(0.25, rel=0.01)
    relative.backward()
    per_image = error.grad.abs().flatten(1).mean(1)
    assert (per_image[1] / per_image[0]).item() == pytest.approx(10.0, rel=0.02)
    with pytest.raises(ValueError, match="needs the degraded input's error"):
        train_indi.clean_prediction_loss(error, "nmse")

    for loss, bounds in (("psnr", (-60.0, 0.0)), ("nmse", (0.0, 2.0))):
        out = tmp_path / loss
        train_indi.main(
            [
                "--task",
                "defocus_deblur",
                "--train_data_dir",
                str(clean_dir),
                "--output_dir",
                str(out),
                "--loss",
                loss,
                "--max_train_steps",
                "2",
                "--report_to",
                "none",
                *FAST,
                *TINY,
            ]
        )
        record = info(out)
        assert record["args"]["loss"] == loss
        losses = [h["loss"] for h in record["history"] if "loss" in h]
        assert len(losses) == 2 and all(bounds[0] < value < bounds[1] for value in losses), (loss, losses)
        assert_restores(out)


def test_size_flags_with_init_from_are_refused(tmp_path, clean_dir, train_indi, capsys):
    """With --init_from the network is the base repo's: a --width or --unshuffle would be silently ignored, so it is
    refused; the resolution is checked against the base's own input multiple (not the default network's)."""
    base = tmp_path / "base"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(base),
            "--max_train_steps",
            "1",
            "--report_to",
            "none",
            *FAST,
            "--width",
            "48",
            "--unshuffle",
            "4",
            "--encoder_blocks",
            "1",
            "--decoder_blocks",
            "1",
            "--resolution",
            "32",
        ]
    )
    for flags in (["--width", "64"], ["--unshuffle", "2"]):
        with pytest.raises(SystemExit):
            train_indi.parse_args(
                [
                    "--task",
                    "denoise",
                    "--train_data_dir",
                    str(clean_dir),
                    "--output_dir",
                    str(tmp_path / "x"),
                    "--init_from",
                    str(base),
                    *flags,
                ]
            )
        assert f"{flags[0]} set the size of a new network" in capsys.readouterr().err
    # the base (unshuffle 4, one level) needs a multiple of 8: 36 is refused, 40 accepted
    with pytest.raises(SystemExit):
        train_indi.parse_args(
            [
                "--task",
                "denoise",
                "--train_data_dir",
                str(clean_dir),
                "--output_dir",
                str(tmp_path / "x"),
                "--init_from",
                str(base),
                "--resolution",
                "36",
            ]
        )
    assert "--resolution must be a multiple of 8" in capsys.readouterr().err
    args = train_indi.parse_args(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(tmp_path / "x"),
            "--init_from",
            str(base),
            "--resolution",
            "40",
        ]
    )
    assert args.width is None and args.unshuffle is None


@pytest.mark.slow
def test_compile_trains_through_the_compiled_forward_and_saves_the_plain_network(
    tmp_path, clean_dir, train_indi, monkeypatch
):
    """--compile: the training forward and backward run through torch.compile, and the saved repo is a plain InDINet.
    The test compiles with the aot_eager backend (dynamo and AOT autograd, as inductor gets them, without generating
    C++ kernels: a minute less); inductor itself trained on the CPU by hand (README, Train and fine-tune)."""
    compiled_calls = []
    real_compile = torch.compile

    def recording_backend(graph_module, example_inputs):
        compiled_calls.append(len(example_inputs))
        return torch._dynamo.lookup_backend("aot_eager")(graph_module, example_inputs)

    monkeypatch.setattr(
        torch,
        "compile",
        lambda model, **kwargs: real_compile(model, backend=recording_backend, dynamic=kwargs.get("dynamic")),
    )
    torch._dynamo.reset()
    out = tmp_path / "compiled"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "3",
            "--report_to",
            "none",
            "--compile",
            *FAST,
            *TINY,
        ]
    )
    torch._dynamo.reset()
    assert compiled_calls, "the training forward did not go through torch.compile"
    assert info(out)["args"]["compile"] is True
    assert_fp16_repo(out)
    from indi_pipeline import InDIPipeline

    assert type(InDIPipeline.from_pretrained(out).unet).__name__ == "InDINet"


def test_width_below_the_folded_channels_is_refused(tmp_path, clean_dir, train_indi, capsys):
    """--unshuffle 4 folds 48 values per 4x4 block into the channels: a narrower first level cannot see or correct a
    part of every image (a 32-channel one kept the path noise in a CPU trial), so training it is refused up front."""
    with pytest.raises(SystemExit):
        train_indi.main(
            [
                "--task",
                "denoise",
                "--train_data_dir",
                str(clean_dir),
                "--output_dir",
                str(tmp_path / "x"),
                "--unshuffle",
                "4",
                "--width",
                "32",
                "--resolution",
                "64",
            ]
        )
    assert "--width 32 is below the 48 values" in capsys.readouterr().err


def test_unshuffle_4_network_trains_and_is_saved(tmp_path, clean_dir, train_indi):
    """The faster configuration (first level at 1/4 resolution) trains and loads like the default."""
    out = tmp_path / "u4"
    train_indi.main(
        [
            "--task",
            "denoise",
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "1",
            "--report_to",
            "none",
            *FAST,
            *TINY,
            "--unshuffle",
            "4",
            "--width",
            "48",
        ]
    )
    assert json.loads((out / "unet" / "config.json").read_text())["unshuffle"] == 4
    assert_fp16_repo(out)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["jpeg", "denoise", "defocus_deblur"])
def test_photo_degradation_mix_trains_in_the_workers_and_on_the_device(tmp_path, clean_dir, train_indi, task):
    """--degradation_mix photo: JPEG in the DataLoader workers, noise and blur on the device; recorded in the repo."""
    out = tmp_path / task
    train_indi.main(
        [
            "--task",
            task,
            "--train_data_dir",
            str(clean_dir),
            "--output_dir",
            str(out),
            "--degradation_mix",
            "photo",
            "--max_train_steps",
            "2",
            "--report_to",
            "none",
            *FAST,
            *TINY,
        ]
    )
    assert_fp16_repo(out)
    record = info(out)
    assert record["args"]["degradation_mix"] == "photo"
    assert record["crop_sampler"] == ("workers" if task == "jpeg" else "device")
