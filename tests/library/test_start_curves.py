"""From an estimate to a start: the estimator's start and quality curves, JPEG files' tables, and their calibration.

The estimators are real InDIStartEstimator networks with random weights (deterministic estimates); the JPEG files
are written by Pillow, so their qualities are known exactly."""

from __future__ import annotations

import io
import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_pipeline

from indi_pipeline.estimation import InDIStartEstimator, interpolate
from indi_pipeline.image_io import open_image_file
from indi_pipeline.jpeg_quality import ijg_quality, jpeg_quality_of
from indi_pipeline.tasks import get_task, start_text


def make_estimator(**config) -> InDIStartEstimator:
    torch.manual_seed(0)
    return InDIStartEstimator(width=8, crop=32, max_crops=4, **config).eval()


def jpeg_file(quality: int, size=(64, 48), **save) -> PIL.Image.Image:
    pixels = np.random.default_rng(quality).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, **save)
    buffer.seek(0)
    return PIL.Image.open(buffer)


def test_start_curve_maps_estimates_and_nothing_below_still_wins():
    estimator = make_estimator(nothing_below=0.1, start_curve=[[0.1, 0.0], [0.3, 0.2], [0.9, 0.8]])
    assert estimator.start_for(0.05) == 0.0  # below nothing_below
    assert estimator.start_for(0.2) == pytest.approx(0.1)  # halfway between the first two knots
    assert estimator.start_for(0.95) == pytest.approx(0.8)  # constant beyond the last knot
    assert make_estimator(nothing_below=0.1).start_for(0.42) == pytest.approx(0.42)  # no curve: the estimate
    assert interpolate([[3, 30], [1, 10]], 2) == pytest.approx(20)  # knots in any order


def test_quality_curve_and_the_larger_start_wins():
    estimator = make_estimator(nothing_below=0.0, quality_curve=[[10, 1.0], [50, 0.8], [90, 0.0]])
    assert estimator.start_for_quality(30) == pytest.approx(0.9)
    assert make_estimator().start_for_quality(30) is None  # no curve: the tables are not used
    assert estimator.start_for_image(0.3, None) == pytest.approx(0.3)  # not a JPEG file: the pixels alone
    assert estimator.start_for_image(0.3, 10) == pytest.approx(1.0)  # a low quality file: its tables
    assert estimator.start_for_image(0.7, 90) == pytest.approx(0.7)  # saved again at 90: the pixels still see it


@pytest.mark.parametrize("quality", [1, 10, 25, 50, 75, 90, 95, 100])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_ijg_quality_is_read_exactly_from_pillow_files(quality, subsampling):
    found = jpeg_quality_of(jpeg_file(quality, subsampling=subsampling))
    assert found.quality == quality and found.is_ijg


def test_custom_tables_get_the_nearest_quality_and_a_mismatch():
    flat = {0: [12] * 64, 1: [12] * 64}  # not an IJG table at any quality
    found = ijg_quality(flat)
    assert not found.is_ijg and 1 <= found.quality <= 100
    with pytest.raises(ValueError, match="64 values"):
        ijg_quality({0: [1, 2, 3]})
    assert jpeg_quality_of(PIL.Image.new("RGB", (8, 8))) is None  # not from a JPEG file


def test_open_image_file_keeps_the_tables_of_a_rotated_jpeg(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to view
    path = tmp_path / "photo.jpg"
    PIL.Image.fromarray(pixels).save(path, "JPEG", quality=35, exif=exif)
    upright = open_image_file(path)
    assert upright.size == (40, 64)  # turned upright: a new image, not the file's
    assert jpeg_quality_of(upright).quality == 35


def test_pipeline_reports_estimates_qualities_and_starts_per_image():
    pipe = make_tiny_pipeline(eps=0.0)
    pipe.register_modules(estimator=make_estimator(nothing_below=0.0, quality_curve=[[10, 1.0], [95, 0.0]]))
    png_like = PIL.Image.fromarray(np.asarray(jpeg_file(60)))  # same pixels, no tables
    out = pipe([jpeg_file(10), png_like], num_inference_steps=1, output_type="pt")
    assert out.jpeg_quality == [10, None]
    estimates = [pipe.estimator.estimate(torch.from_numpy(np.asarray(im)).permute(2, 0, 1)[None] / 255).item()
                 for im in (jpeg_file(10), png_like)]  # fmt: skip
    assert out.estimated_t == pytest.approx(estimates, abs=1e-5)
    assert out.start_t == pytest.approx([1.0, min(1.0, estimates[1])], abs=1e-5)
    by_number = pipe(png_like, num_inference_steps=1, strength=1.0, output_type="pt")
    assert by_number.estimated_t is None and by_number.jpeg_quality is None


def test_start_text_says_what_was_read_and_where_the_walk_started():
    denoise, jpeg = get_task("denoise"), get_task("jpeg")
    assert start_text(denoise, 0.18, 0.2) == "noise ≈ 10/255 → t = 0.18"
    assert start_text(denoise, 0.0, 0.04) == "noise ≈ 2/255: nothing to restore, left unchanged"
    assert start_text(jpeg, 1.0, 0.85, 30) == "JPEG quality 30 (file tables), t ≈ 0.85 → t = 1.00"
    assert start_text(jpeg, 0.32) == "t = 0.32"  # a number given by hand
    assert start_text(jpeg, 0.0) == "nothing to restore: left unchanged"


def test_non_decreasing_pools_adjacent_violators():
    from train.calibrate_estimator import non_decreasing

    assert non_decreasing([0.0, 0.2, 0.1, 0.4]) == pytest.approx([0.0, 0.15, 0.15, 0.4])
    assert non_decreasing([0.5, 0.3, 0.1]) == pytest.approx([0.3, 0.3, 0.3])


def test_calibration_writes_monotone_curves_into_the_repo(tmp_path):
    from train import calibrate_estimator

    pipe = make_tiny_pipeline(eps=0.0, task="jpeg")
    pipe.register_modules(estimator=make_estimator(task="jpeg").half())
    pipe.save_pretrained(tmp_path / "repo")
    photos = tmp_path / "val"
    photos.mkdir()
    for k in range(2):
        pixels = np.random.default_rng(k).integers(0, 256, (256, 272, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(photos / f"p{k}.png")
    report = calibrate_estimator.calibrate(tmp_path / "repo", str(photos), threads=1)
    config = json.loads((tmp_path / "repo" / "estimator" / "config.json").read_text())
    starts = [s for _, s in config["start_curve"]]
    assert starts == sorted(starts) and len(starts) == len(calibrate_estimator.levels("jpeg"))
    by_quality = [s for _, s in sorted(config["quality_curve"])]
    assert by_quality == sorted(by_quality, reverse=True)  # a lower quality never starts later
    assert config["nothing_below"] == report["nothing_below"]["nothing_below"]
    info = json.loads((tmp_path / "repo" / "estimator" / "train_info.json").read_text())
    assert set(info["curves"]) >= {"start_curve", "quality_curve", "machine"}


@pytest.mark.parametrize("with_tree", [False, True])
def test_estimator_and_its_curves_load_by_repo_id_from_the_hub_cache(hub_cache, tmp_path, with_tree):
    from helpers import HUB_REPO_ID, build_hub_cache

    from indi_pipeline import InDIPipeline

    pipe = make_tiny_pipeline(eps=0.0, task="jpeg")
    curve, qualities = [[0.1, 0.0], [0.9, 1.0]], [[10, 1.0], [95, 0.05]]
    pipe.register_modules(estimator=make_estimator(task="jpeg", start_curve=curve, quality_curve=qualities).half())
    pipe.save_pretrained(tmp_path / "repo")
    build_hub_cache(hub_cache, HUB_REPO_ID, tmp_path / "repo", with_tree=with_tree)
    loaded = InDIPipeline.from_pretrained(HUB_REPO_ID)
    assert isinstance(loaded.estimator, InDIStartEstimator)
    assert loaded.estimator.config.start_curve == curve and loaded.estimator.config.quality_curve == qualities
    image = jpeg_file(20)
    assert loaded(image, num_inference_steps=1, output_type="pt").start_t == pytest.approx(
        pipe(image, num_inference_steps=1, output_type="pt").start_t, abs=1e-3
    )


def test_copies_of_one_image_walk_as_one_batch_under_auto():
    pipe = make_tiny_pipeline(eps=0.0)
    pipe.register_modules(estimator=make_estimator(nothing_below=0.0))
    calls = []
    original = pipe.unet.forward
    pipe.unet.forward = lambda x, *a, **k: calls.append(x.shape[0]) or original(x, *a, **k)
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(5))
    out = pipe(image.repeat(3, 1, 1, 1), num_inference_steps=2, output_type="pt")
    assert calls == [3, 3] and len(set(out.start_t)) == 1 and len(out.estimated_t) == 3
    assert out.jpeg_quality == [None, None, None]  # one entry per image, like start_t


def test_a_threshold_only_calibration_keeps_the_curves_and_their_sweep(tmp_path):
    from train import calibrate_estimator

    pipe = make_tiny_pipeline(eps=0.0, task="denoise")
    pipe.register_modules(estimator=make_estimator(task="denoise").half())
    pipe.save_pretrained(tmp_path / "repo")
    photos = tmp_path / "val"
    photos.mkdir()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 264, 3), dtype=np.uint8)).save(photos / "p.png")
    calibrate_estimator.calibrate(tmp_path / "repo", str(photos), threads=1, command="first")
    config_path, info_path = (tmp_path / "repo" / "estimator" / name for name in ("config.json", "train_info.json"))
    curve = json.loads(config_path.read_text())["start_curve"]
    calibrate_estimator.calibrate(tmp_path / "repo", str(photos), threads=1, curves=False, pooling={"crop": 64},
                                  command="second")  # fmt: skip
    config, info = json.loads(config_path.read_text()), json.loads(info_path.read_text())
    assert config["start_curve"] == curve and config["crop"] == 64
    assert len(info["curves"]["points"]) == len(calibrate_estimator.levels("denoise"))
    assert info["calibration_commands"] == ["first", "second"]
