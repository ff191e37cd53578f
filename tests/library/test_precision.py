"""bf16 where the hardware has it: the dtype choice (capability faked, never the math), bf16 results close to fp32 on a
tiny network (whole image and tiled), the CLI flag and env var, the Space's device choice, the training flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_pipeline, save_tiny_repo

from indi_pipeline import acceleration, machine
from indi_pipeline.acceleration import DTYPE_ENV, dtype_name, optimize_for_inference, resolve_dtype
from indi_pipeline.metrics import psnr

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_dtype_env(monkeypatch):
    monkeypatch.delenv(DTYPE_ENV, raising=False)


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_capability(monkeypatch, no_dtype_env, native):
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else None)
    assert resolve_dtype(None, "cpu") == (torch.bfloat16 if native else None)  # no env: auto


@pytest.mark.parametrize("native", [True, False])
def test_forced_choices_ignore_the_capability(monkeypatch, no_dtype_env, native):
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("fp32", "cpu") is None
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype(" BF16 ", "cpu") == torch.bfloat16


def test_the_env_var_decides_when_no_choice_is_given(monkeypatch):
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv(DTYPE_ENV, "fp32")
    assert resolve_dtype(None, "cpu") is None
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16  # an explicit choice wins over the env
    monkeypatch.setenv(DTYPE_ENV, "half")
    with pytest.raises(ValueError, match=r"\$INDI_DTYPE must be one of auto, fp32, bf16, got 'half'"):
        resolve_dtype(None, "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp16", "cpu")


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_asks_torch(monkeypatch, no_dtype_env, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_dtype("auto", "cuda") == (torch.bfloat16 if supported else None)


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx512f", "avx512bw"})
    assert not machine.cpu_has_native_bf16()  # AVX-512 alone emulates bf16: slower than fp32
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert machine.cpu_has_native_bf16()
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"amx_bf16"})
    assert machine.cpu_has_native_bf16()
    monkeypatch.setattr(machine, "cpu_flags", set)
    assert not machine.cpu_has_native_bf16()


def _restore(pipe, image, **kwargs):
    return pipe(image, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs)


@pytest.mark.slow
def test_bf16_runs_the_network_in_bf16_and_the_walk_in_fp32():
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02), dtype="bf16")
    assert dtype_name(pipe.autocast_dtype) == "bf16"
    seen = []
    first_conv = next(m for m in pipe.unet.modules() if isinstance(m, torch.nn.Conv2d))
    handle = first_conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = _restore(pipe, image)
    handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert out.images.dtype == torch.float32
    pipe.autocast_dtype = None
    seen.clear()
    handle = first_conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    _restore(pipe, image)
    handle.remove()
    assert set(seen) == {torch.float32}


def test_bf16_is_close_to_fp32_whole_and_tiled():
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.02), dtype="fp32")
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(2))
    reference = _restore(pipe, image).images
    reference_tiled = _restore(pipe, image, tile_size=32, tile_overlap=8).images
    pipe.autocast_dtype = torch.bfloat16
    whole = _restore(pipe, image).images
    tiled = _restore(pipe, image, tile_size=32, tile_overlap=8).images
    assert whole.shape == tiled.shape == reference.shape
    assert not torch.equal(whole, reference)  # bf16 really ran
    # A tiny network with random weights amplifies bf16's rounding (measured 32.4 dB here; the bundled models give
    # 55-60 dB, zoo/precision_gate.py); a walk or tile merge that lost float32 would fall far below.
    assert psnr(whole, reference).item() > 30
    assert psnr(tiled, reference_tiled).item() > 30
    assert psnr(tiled, whole).item() > 30


def test_bf16_keeps_batched_samples_independent():
    """The uncertainty batch: K samples with their own generators, under bf16."""
    pipe = optimize_for_inference(make_tiny_pipeline(eps=0.05), dtype="bf16")
    batch = np.repeat((np.random.default_rng(0).random((1, 32, 32, 3)) * 255).astype(np.uint8), 3, axis=0)
    generators = [torch.Generator().manual_seed(k) for k in range(3)]
    out = pipe(batch, num_inference_steps=2, generator=generators, output_type="np").images
    assert out.shape == (3, 32, 32, 3) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != DTYPE_ENV}
    env.update(HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "indi_pipeline", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_cli_dtype_flag_and_env(tmp_path):
    repo = save_tiny_repo(tmp_path / "repo", task="jpeg")
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(photo)
    common = [str(photo), "--task", "jpeg", "--model", str(repo), "--steps", "1", "--output-dir", str(tmp_path / "o")]
    for choice in ("fp32", "bf16"):
        result = _cli("restore", *common, "--dtype", choice)
        assert result.returncode == 0, result.stderr
        assert f", {choice}" in result.stdout
    result = _cli("restore", *common, env_extra={DTYPE_ENV: "bf16"})
    assert result.returncode == 0 and ", bf16" in result.stdout
    result = _cli("restore", *common, env_extra={DTYPE_ENV: "fp8"})
    assert result.returncode != 0
    assert "$INDI_DTYPE must be one of auto, fp32, bf16, got 'fp8'" in result.stderr
    result = _cli("restore", *common, "--dtype", "half")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.fixture(scope="module")
def app_module():
    pytest.importorskip("gradio")
    import app

    return app


@pytest.mark.slow
def test_space_uses_cuda_when_torch_sees_a_gpu(app_module, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert app_module.inference_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert app_module.inference_device() == "cpu"


@pytest.mark.slow
def test_space_wraps_handlers_for_zerogpu_only_when_spaces_is_installed(app_module, monkeypatch):
    def handler():
        return "ran"

    monkeypatch.setattr(app_module, "spaces", None)
    assert app_module.gpu_handler(handler) is handler
    wrapped = []
    fake = types.SimpleNamespace(GPU=lambda fn: wrapped.append(fn) or (lambda *a, **k: ("gpu", fn(*a, **k))))
    monkeypatch.setattr(app_module, "spaces", fake)
    decorated = app_module.gpu_handler(handler)
    assert wrapped == [handler] and decorated() == ("gpu", "ran")


def test_training_mixed_precision_resolution(monkeypatch):
    from train import train_indi

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(train_indi, "training_on_cpu", lambda: True)
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: True)
    assert train_indi.resolve_mixed_precision(None) == "bf16"
    assert train_indi.resolve_mixed_precision("auto") == "bf16"
    assert train_indi.resolve_mixed_precision("no") == "no"
    monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda: False)
    assert train_indi.resolve_mixed_precision(None) == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` passes from its config
    assert train_indi.resolve_mixed_precision(None) == "bf16"


@pytest.mark.slow
def test_tiny_bf16_training_run_records_bf16_and_channels_last(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        PIL.Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "train.train_indi", "--task", "denoise", "--train_data_dir", str(photos),
        "--output_dir", str(out), "--resolution", "32", "--train_batch_size", "2", "--max_train_steps", "3",
        "--logging_steps", "3", "--checkpointing_steps", "100", "--report_to", "none", "--mixed_precision", "bf16",
        "--width", "12", "--encoder_blocks", "1", "1", "--decoder_blocks", "1", "1", "--middle_blocks", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "train_info.json").read_text())
    assert info["mixed_precision"] == "bf16"
    assert info["args"]["channels_last"] is True  # the CPU default with bf16
    assert np.isfinite(info["history"][-1]["loss"])
