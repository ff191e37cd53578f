"""The Space, end to end: the real app.py in a subprocess on a free local port, called with gradio_client.

Offline and small: tiny crops of a bundled example photo, 1-10 steps, one torch thread (INDI_TEST_THREADS). Uses the
bundled trained models (model_cards/indi-<task>, or $INDI_MODEL_DIR); a test whose model is missing is skipped.
Bad uploads (not an image, truncated, too large...) are rows of test_hostile_inputs.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.app_server import REPO, running_app
from indi_pipeline.tasks import TASKS

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402  (after the skip)
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.slow  # each test talks to app.py running in a subprocess

EXAMPLE = REPO / "examples" / "cups.png"
# The app offers the tasks whose model is bundled and defaults to the first of them (app.AVAILABLE_TASKS).
BUNDLED = [t for t, spec in TASKS.items() if (spec.local_path / "model_index.json").is_file()]
DEFAULT_TASK = next((t for t in BUNDLED if TASKS[t].upscale_factor == 1), BUNDLED[0] if BUNDLED else "motion_deblur")


def needs(*tasks: str):
    """Skip unless the bundled models of `tasks` exist."""
    missing = [str(TASKS[t].local_path) for t in tasks if not (TASKS[t].local_path / "model_index.json").is_file()]
    return pytest.mark.skipif(bool(missing), reason=f"no trained model at {', '.join(missing)}")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    paths = {"small": folder / "small.png"}
    with Image.open(EXAMPLE) as photo:
        photo.convert("RGB").crop((200, 100, 264, 148)).save(paths["small"])  # 64x48
    return paths


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app")) as url:
        yield Client(url, verbose=False)


def _restore(client, path, **kwargs):
    before_after, report, trajectory = client.predict(handle_file(str(path)), api_name="/restore", **kwargs)
    before, after = before_after
    return Image.open(before), Image.open(after), report, trajectory


# The Space defaults to Auto where a bundled same-size repo has a start estimator (app.AUTO_TASKS).
AUTO_TASKS = [t for t in ("jpeg", "denoise", "defocus_deblur", "motion_deblur")
              if t in BUNDLED and (TASKS[t].local_path / "estimator" / "config.json").is_file()]  # fmt: skip


@pytest.mark.skipif(not AUTO_TASKS, reason="no bundled model with a start estimator")
def test_the_default_is_auto_which_reports_what_it_found_and_applied(client, files):
    before, after, report, trajectory = _restore(client, files["small"])  # every parameter but the image defaulted
    assert after.format == "PNG" and after.size == (64, 48) and before.size == (64, 48)
    assert report.startswith("**Auto**") and "Applied: " in report
    for task_id in AUTO_TASKS:  # each estimator gave its reading, present or not
        assert ("no " + {"jpeg": "JPEG blocking", "denoise": "noise", "defocus_deblur": "defocus blur",
                         "motion_deblur": "motion blur"}[task_id]) in report or task_id in report  # fmt: skip
    captions = [frame["caption"] for frame in trajectory]
    assert captions[0] == "input" and all(c.startswith("after ") for c in captions[1:])
    with pytest.raises(AppError, match="uncertainty view draws samples of one model"):
        client.predict(handle_file(str(files["small"])), api_name="/uncertainty")


@needs(DEFAULT_TASK)
def test_restore_with_defaults_returns_png_of_input_size(client, files):
    before, after, report, trajectory = _restore(client, files["small"], task=DEFAULT_TASK)  # the rest defaulted
    size = (256, 192) if DEFAULT_TASK == "sr4" else (64, 48)
    assert after.format == "PNG" and after.size == size and before.size == size
    assert TASKS[DEFAULT_TASK].title in report and f"{TASKS[DEFAULT_TASK].default_steps} steps" in report
    captions = [frame["caption"] for frame in trajectory]
    frames = min(
        6, TASKS[DEFAULT_TASK].default_steps + 1
    )  # app.TRAJECTORY_FRAMES at most: every step's x_t, t = 1 to 0
    # From t = 1, or from the estimated start where the task's repo has an estimator (0.00: left unchanged).
    assert len(captions) == frames and captions[0].startswith("t = ") and captions[-1].startswith("t = 0.00")


@needs("sr4")
def test_super_resolution_output_is_4x_larger(client, files):
    before, after, _, _ = _restore(client, files["small"], task="sr4", steps=1)
    assert after.size == (256, 192) and before.size == (256, 192)  # before: the bicubic upscale the walk starts at


@needs("jpeg")
def test_steps_change_the_result(client, files):
    # Degraded first: the clean crop itself is, rightly, left unchanged by the jpeg repo's start estimator.
    _, one, _, _ = _restore(client, files["small"], task="jpeg", steps=1, degrade_first=True)
    _, ten, _, _ = _restore(client, files["small"], task="jpeg", steps=10, degrade_first=True)
    difference = np.abs(np.asarray(one, dtype=np.float32) - np.asarray(ten, dtype=np.float32)).mean()
    assert difference > 0.5  # grey levels


@needs("jpeg")
def test_clean_photo_is_degraded_and_scored(client, files):
    _, _, report, _ = _restore(client, files["small"], task="jpeg", steps=2, degrade_first=True)
    assert "PSNR" in report and "LPIPS" in report and report.count(" dB") == 2


@needs(DEFAULT_TASK, "denoise")
def test_bad_parameter_is_a_clear_error(client, files):
    with pytest.raises(AppError, match="steps must be a whole number from 0 to 50, got 51"):  # 0: the model's own
        client.predict(handle_file(str(files["small"])), steps=51, api_name="/restore")
    with pytest.raises(AppError, match="outside"):  # 80/255 is above the denoiser's sigma_max of 50/255
        client.predict(handle_file(str(files["small"])), task="denoise", noise_level=80, api_name="/restore")


@pytest.mark.parametrize("task", [pytest.param(task, marks=needs(task)) for task in TASKS])
def test_every_bundled_model_loads_and_restores(client, files, task):
    _, after, report, _ = _restore(client, files["small"], task=task, steps=1)
    assert after.size == ((256, 192) if task == "sr4" else (64, 48)), report


@needs("jpeg")
def test_uncertainty_samples_in_one_call(client, files):
    mean, heatmap, report = client.predict(
        handle_file(str(files["small"])), task="jpeg", steps=2, samples=3, api_name="/uncertainty"
    )
    assert Image.open(mean).size == (64, 48)
    assert Image.open(heatmap).width >= 64  # the heatmap with its colour scale below
    assert "3 samples" in report and "Mean per-pixel std" in report


def test_upload_over_the_file_size_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (10 * 1024 * 1024 + 1))  # launch(max_file_size="10mb")
    with pytest.raises(ValueError, match="exceeds the maximum file size of 10485760 bytes"):
        client.predict(handle_file(str(big)), api_name="/restore")


@pytest.fixture(scope="module")
def app_module():
    spec = importlib.util.spec_from_file_location("indi_space_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_missing_model_names_the_task_and_where_it_looked(app_module, monkeypatch, tmp_path):
    import gradio as gr

    task = app_module.TASKS["jpeg"]
    monkeypatch.setattr(app_module, "_PIPELINES", {})
    monkeypatch.setenv("INDI_MODEL_DIR", str(tmp_path))
    with pytest.raises(gr.Error, match=f"No model for task 'jpeg'.*{tmp_path / 'indi-jpeg'}/model_index.json"):
        app_module.get_pipeline(task)

    # The Hub source (offline here, with no cache): the error names the repo id and the pinned revision.
    monkeypatch.setenv("INDI_MODEL_SOURCE", "hub")
    monkeypatch.setenv("INDI_HUB_ORG", "someone")
    monkeypatch.setenv("INDI_MODEL_REVISION", "v1.0")
    with pytest.raises(gr.Error, match="Could not load the model for task 'jpeg' from someone/indi-jpeg@v1.0"):
        app_module.get_pipeline(task)


@needs("denoise")
def test_report_says_what_was_estimated_and_a_known_noise_level_overrides_it(client, files):
    _, _, report, _ = _restore(client, files["small"], task="denoise", steps=1, degrade_first=True)
    assert "estimated from the image: " in report  # what it read off this small crop: a level or "nothing"
    _, _, report, _ = _restore(client, files["small"], task="denoise", steps=1, noise_level=25, degrade_first=True)
    assert "known noise level 25/255" in report and "estimated from the image" not in report


@needs("denoise")
def test_the_download_keeps_the_photo_s_profile_and_exif(client, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Camera maker"  # stored sideways, as phones do
    with Image.open(EXAMPLE) as photo:
        photo.convert("RGB").crop((200, 100, 264, 148)).save(
            tmp_path / "phone.jpg", quality=92, icc_profile=icc, exif=exif.tobytes()
        )
    _, after, _, _ = _restore(client, tmp_path / "phone.jpg", task="denoise", steps=1)
    assert after.size == (48, 64)  # upright
    assert after.info["icc_profile"] == icc
    assert after.getexif()[0x0112] == 1 and after.getexif()[0x010F] == "Camera maker"


@needs("denoise")
def test_a_photo_too_large_to_restore_whole_gets_a_full_resolution_region(client, tmp_path):
    with Image.open(EXAMPLE) as photo:
        big = photo.convert("RGB").resize((2400, 1500))  # 3.6 MP: over the Space's 2.1 MP
    big.save(tmp_path / "phone.png")
    before, after, report, trajectory = _restore(client, tmp_path / "phone.png", task="denoise", steps=1, region_x=0)
    width, height = after.size
    assert width * height <= 2.1e6 and abs(width / height - 1.6) < 0.01  # the photo's shape, within the limit
    assert np.array_equal(
        np.asarray(before), np.asarray(big.crop((0, 750 - height // 2, width, 750 - height // 2 + height)))
    )
    assert "2400×1500 px" in report and "full-resolution region x 0–" in report and "indi restore" in report
    assert trajectory[0]["caption"] == "the restored region of the 2400×1500 photo"


@needs("defocus_deblur")
def test_a_start_set_by_hand_overrides_the_estimate(client, files):
    _, _, report, trajectory = _restore(client, files["small"], task="defocus_deblur", steps=2, start=0.6)
    assert "start t = 0.60 (set by hand)" in report and trajectory[0]["caption"].startswith("t = 0.60")
    with pytest.raises(AppError, match="Auto finds each model's start itself"):
        client.predict(handle_file(str(files["small"])), task="auto", start=0.5, api_name="/restore")
