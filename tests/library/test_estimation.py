"""strength="auto": the start estimator (indi_pipeline.estimation), its place in a repo, and the pipeline's use of it.

The estimators here are real InDIStartEstimator networks with random weights: their estimates are arbitrary but
deterministic, which is what the plumbing needs (per-image t, once per image, the same walk as that number given by
hand). How well the trained ones estimate is measured by benchmarks/blind_restoration.py, and checked on synthetic
x_t by the last test where a bundled repo carries one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipeline

from indi_pipeline import InDIPipeline
from indi_pipeline.estimation import InDIStartEstimator, grid_crops
from indi_pipeline.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent.parent


def make_estimator(seed: int = 0, **config) -> InDIStartEstimator:
    torch.manual_seed(seed)
    return InDIStartEstimator(width=8, crop=32, max_crops=4, **config).eval()


def pipeline_with_estimator(**config) -> InDIPipeline:
    pipe = make_tiny_pipeline(eps=0.0)
    pipe.register_modules(estimator=make_estimator(**config))
    return pipe


def images(count: int = 2, size: int = 48) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_estimates_are_one_t_in_0_1_per_image():
    estimator = make_estimator()
    batch = images(3, 64)
    t = estimator.estimate(batch)
    assert t.shape == (3,) and ((t >= 0) & (t <= 1)).all()
    assert torch.allclose(t[1:2], estimator.estimate(batch[1:2]))  # an image's estimate does not depend on its batch


def test_grid_crops_cover_large_images_and_shrink_for_small_ones():
    assert grid_crops(torch.rand(3, 400, 300), 128, 16).shape == (6, 3, 128, 128)  # 3 rows x 2 columns fit
    assert grid_crops(torch.rand(3, 40, 50), 128, 16).shape == (1, 3, 40, 50)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(1, 3, 1, 1), "too small to estimate"),
        (torch.full((1, 3, 64, 64), float("nan")), "NaN or infinite"),
        (torch.rand(1, 1, 64, 64), r"\(N, 3, H, W\)"),
    ],
)
def test_bad_input_gets_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        make_estimator().estimate(bad)


def test_auto_without_an_estimator_names_what_is_missing():
    pipe = make_tiny_pipeline()
    with pytest.raises(ValueError, match="has no estimator/ folder"):
        pipe(images(1), num_inference_steps=1, strength="auto")
    out = pipe(images(1), num_inference_steps=1, output_type="pt")  # the default stays strength 1
    assert out.start_t == [1.0]


def test_auto_is_the_default_and_matches_the_number_given_by_hand():
    pipe = pipeline_with_estimator()
    batch = images(2)
    out = pipe(batch, num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0))
    expected = pipe.estimator.estimate(batch).tolist()
    assert out.start_t == pytest.approx(expected)
    for k, t in enumerate(out.start_t):  # each image walked from its own t
        alone = pipe(batch[k : k + 1], num_inference_steps=3, strength=t, output_type="pt")
        torch.testing.assert_close(out.images[k : k + 1], alone.images)


def test_auto_with_tiles_estimates_once_per_image():
    pipe = pipeline_with_estimator()
    calls = []
    original = pipe.estimator.estimate
    pipe.estimator.estimate = lambda x: calls.append(tuple(x.shape)) or original(x)
    image = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(4))
    tiled = pipe(image, num_inference_steps=2, output_type="pt", tile_size=32, tile_overlap=8)
    assert calls == [(1, 3, 80, 96)]
    by_hand = pipe(
        image, num_inference_steps=2, strength=tiled.start_t[0], tile_size=32, tile_overlap=8, output_type="pt"
    )
    torch.testing.assert_close(tiled.images, by_hand.images)


def test_nothing_to_restore_returns_the_image_unchanged():
    pipe = pipeline_with_estimator(nothing_below=1.01)  # every estimate counts as "nothing to restore"
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = pipe(image, num_inference_steps=4, output_type="np", return_trajectory=True)
    assert out.start_t == [0.0]
    np.testing.assert_allclose(out.images[0], image / 255.0, atol=1e-6)
    assert len(out.trajectory) == 5


def test_estimator_round_trips_through_a_repo_folder(tmp_path):
    pipe = pipeline_with_estimator()
    pipe.estimator.half()  # as train_estimator saves it: fp16 safetensors
    pipe.save_pretrained(tmp_path / "repo")
    index = json.loads((tmp_path / "repo" / "model_index.json").read_text())
    assert index["estimator"] == ["indi_pipeline.estimation", "InDIStartEstimator"]
    assert (tmp_path / "repo" / "estimator" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = InDIPipeline.from_pretrained(tmp_path / "repo")
    assert isinstance(loaded.estimator, InDIStartEstimator)
    batch = images(1)
    assert loaded.estimator.estimate(batch).item() == pytest.approx(
        pipe.estimator.float().estimate(batch).item(), abs=1e-3
    )


def test_a_repo_without_an_estimator_still_loads(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path / "repo")
    loaded = InDIPipeline.from_pretrained(tmp_path / "repo")
    assert loaded.estimator is None
    assert loaded(images(1), num_inference_steps=1, output_type="pt").start_t == [1.0]


@pytest.mark.parametrize("task_id", ["denoise", "jpeg", "motion_deblur", "defocus_deblur"])
def test_bundled_estimators_read_t_off_synthetic_x_t(task_id):
    """x_t = (1 - t) x + t y of a held-out example photo at known t: the bundled estimator's error stays within the
    held-out error its training measured (estimator/train_info.json, 90th percentile), with a margin for one photo."""
    repo = TASKS[task_id].local_path
    if not (repo / "estimator" / "config.json").is_file():
        pytest.skip(f"{repo} has no estimator")
    from indi_pipeline.degradations import degradation_generator, pil_to_tensor
    from train.train_estimator import training_samples

    estimator = InDIStartEstimator.from_pretrained(repo / "estimator").eval()
    p90 = json.loads((repo / "estimator" / "train_info.json").read_text())["validation"]["p90_abs_error"]
    import PIL.Image

    photo = pil_to_tensor(PIL.Image.open(ROOT / "examples" / "cups.png"))[..., :256, :256]
    rng = np.random.default_rng(0)
    x = photo.repeat(16, 1, 1, 1)
    x_t, t = training_samples(task_id, x, degradation_generator(0), rng)
    error = (estimator.estimate(x_t) - t).abs()
    assert error.median() < p90 + 0.05, (error, t)


def _run_cli(*args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "indi_pipeline", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_cli_prints_the_estimate_per_file_and_refuses_auto_without_an_estimator(tmp_path):
    import PIL.Image

    with_estimator = pipeline_with_estimator()
    with_estimator.register_to_config(task="denoise")
    with_estimator.save_pretrained(tmp_path / "auto_repo")
    make_tiny_pipeline().save_pretrained(tmp_path / "plain_repo")
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(photo)
    common = [str(photo), "--task", "denoise", "--steps", "2", "--output-dir", str(tmp_path / "out")]

    result = _run_cli("restore", *common, "--model", str(tmp_path / "auto_repo"))
    assert result.returncode == 0, result.stderr
    assert "strength estimated per image" in result.stdout
    assert "noise ≈ " in result.stdout and "/255 → t = " in result.stdout

    result = _run_cli("restore", *common, "--model", str(tmp_path / "plain_repo"), "--strength", "auto")
    assert result.returncode == 1 and "needs the model repo's start estimator" in result.stderr
    result = _run_cli("restore", *common, "--model", str(tmp_path / "plain_repo"))
    assert result.returncode == 0 and "strength 1" in result.stdout  # no estimator: today's default
    result = _run_cli("restore", *common, "--strength", "lots")
    assert result.returncode == 2 and "must be 'auto' or a number" in result.stderr
