"""indi_pipeline.auto_restore: detection by the tasks' start estimators and the chain that restores what was found.

The pipelines are tiny real ones and the estimators real networks with random weights; whether a degradation is
"present" is set through each estimator's nothing_below (0: always, above 1: never), so the answers are known."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_pipeline

from indi_pipeline.auto_restore import Finding, chain_for, detect, restore_auto, run_chain
from indi_pipeline.estimation import InDIStartEstimator

ALWAYS, NEVER = 0.0, 1.01


def pipeline(task: str, nothing_below: float | None, seed: int = 0):
    pipe = make_tiny_pipeline(eps=0.0, seed=seed, task=task, upscale_factor=4 if task == "sr4" else 1)
    if nothing_below is not None:
        torch.manual_seed(seed)
        estimator = InDIStartEstimator(width=8, crop=32, max_crops=4, task=task, nothing_below=nothing_below)
        pipe.register_modules(estimator=estimator.eval())
    return pipe


def photo(size=(48, 40)) -> torch.Tensor:
    return torch.rand(1, 3, size[1], size[0], generator=torch.Generator().manual_seed(9))


def zoo(**presence) -> dict:
    return {task: pipeline(task, presence[task], seed=k) for k, task in enumerate(presence)}


def test_detect_reads_every_estimator_in_chain_order():
    pipes = zoo(motion_deblur=NEVER, denoise=ALWAYS, jpeg=ALWAYS)
    findings = detect(photo(), {t: p.estimator for t, p in pipes.items()})
    assert [f.task for f in findings] == ["jpeg", "denoise", "motion_deblur"]
    assert [f.present for f in findings] == [True, True, False]
    assert all(0.0 <= f.estimate <= 1.0 for f in findings)
    assert findings[1].text().startswith("noise: noise ≈ ") and findings[2].text() == "no motion blur"


def test_a_jpeg_file_s_tables_reach_the_jpeg_finding_only():
    pipes = zoo(jpeg=ALWAYS, denoise=ALWAYS)
    pipes["jpeg"].estimator.register_to_config(quality_curve=[[10, 1.0], [95, 0.0]])
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=10
    )
    findings = detect(PIL.Image.open(buffer), {t: p.estimator for t, p in pipes.items()})
    assert findings[0].jpeg_quality == 10 and findings[0].start == 1.0  # the tables: quality 10 starts at 1
    assert findings[1].jpeg_quality is None


def test_the_chain_keeps_one_blur_the_later_start_and_defocus_on_a_tie():
    defocus, motion = Finding("defocus_deblur", 0.5, 0.6), Finding("motion_deblur", 0.9, 0.8)
    noise = Finding("denoise", 0.3, 0.3)
    assert chain_for([noise, defocus, motion]) == [noise, motion]  # the later start
    tied = Finding("motion_deblur", 0.99, 0.6)  # a larger estimate, from another estimator: not compared
    assert chain_for([defocus, tied]) == [defocus] and chain_for([tied, defocus]) == [defocus]
    assert chain_for([Finding("motion_deblur", 0.1, 0.0), noise]) == [noise]  # absent ones are left out


@pytest.mark.parametrize("reestimate", [True, False])
def test_restore_auto_runs_the_found_tasks_in_order_as_their_pipelines_would(reestimate):
    pipes = zoo(motion_deblur=ALWAYS, denoise=ALWAYS, jpeg=ALWAYS, defocus_deblur=NEVER)
    image = photo()
    result = restore_auto(image, pipes, num_inference_steps=2, reestimate=reestimate)
    assert [s.task for s in result.stages] == ["jpeg", "denoise", "motion_deblur"]
    current = image
    for stage, finding in zip(result.stages, chain_for(result.findings)):
        if not reestimate:
            assert stage.start == pytest.approx(finding.start)
        by_hand = pipes[stage.task](current, num_inference_steps=2, strength=stage.start, output_type="pt").images
        torch.testing.assert_close(stage.image, by_hand)
        current = by_hand
    torch.testing.assert_close(result.image, current)
    assert "Applied: jpeg from t = " in result.report() and "no defocus blur" in result.report()


def test_run_chain_runs_a_given_chain_and_skips_a_stage_read_as_clean():
    pipes = zoo(jpeg=ALWAYS, denoise=NEVER)
    image = photo()
    result = run_chain(image, pipes, [("denoise", "auto"), ("jpeg", 0.4), ("denoise", 0.3)], num_inference_steps=1)
    assert [(s.task, s.start) for s in result.stages] == [("jpeg", 0.4), ("denoise", pytest.approx(0.3))]
    by_hand = pipes["jpeg"](image, num_inference_steps=1, strength=0.4, output_type="pt").images
    by_hand = pipes["denoise"](by_hand, num_inference_steps=1, strength=0.3, output_type="pt").images
    torch.testing.assert_close(result.image, by_hand)
    assert result.findings == [] and run_chain(image, pipes, []).image is not None


def test_nothing_found_leaves_the_photo_unchanged_and_upscale_needs_sr4():
    pipes = zoo(denoise=NEVER, jpeg=NEVER)
    image = photo()
    result = restore_auto(image, pipes)
    assert result.stages == [] and torch.equal(result.image, image)
    assert result.report().startswith("Found nothing to restore") and result.report().endswith("nothing (unchanged).")
    with pytest.raises(ValueError, match="no sr4 pipeline"):
        restore_auto(image, pipes, upscale=True)
    upscaled = restore_auto(image, {**pipes, "sr4": pipeline("sr4", None)}, num_inference_steps=1, upscale=True)
    assert [s.task for s in upscaled.stages] == ["sr4"] and upscaled.image.shape[-2:] == (160, 192)
    with pytest.raises(ValueError, match="at least one model repo with a start estimator"):
        restore_auto(image, {"sr4": pipeline("sr4", None)})


def test_cli_task_auto_prints_what_it_found_and_applied(tmp_path, monkeypatch, capsys):
    from indi_pipeline.cli import main

    models = tmp_path / "models"
    pipeline("denoise", ALWAYS).save_pretrained(models / "indi-denoise")
    pipeline("jpeg", NEVER, seed=1).save_pretrained(models / "indi-jpeg")
    monkeypatch.setenv("INDI_MODEL_DIR", str(models))
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "a.png"), "--task", "auto", "--steps", "1", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "looking for jpeg, denoise" in text and "no JPEG blocking" in text and "Applied: denoise from t = " in text
    assert PIL.Image.open(out / "a_auto.png").size == (48, 40)
    with pytest.raises(SystemExit, match="--sigma is for one task"):
        main(["restore", str(tmp_path / "a.png"), "--task", "auto", "--sigma", "10"])
    with pytest.raises(SystemExit, match="--upscale is for --task auto"):
        main(["restore", str(tmp_path / "a.png"), "--task", "denoise", "--upscale"])


def test_load_pipelines_takes_the_bundled_repos_with_an_estimator(tmp_path, monkeypatch):
    from indi_pipeline.auto_restore import load_pipelines

    models = tmp_path / "models"
    pipeline("denoise", ALWAYS).save_pretrained(models / "indi-denoise")
    pipeline("jpeg", None).save_pretrained(models / "indi-jpeg")  # no estimator: left out
    pipeline("sr4", None).save_pretrained(models / "indi-sr4")
    monkeypatch.setenv("INDI_MODEL_DIR", str(models))
    assert sorted(load_pipelines(("jpeg", "denoise"))) == ["denoise"]
    assert sorted(load_pipelines(("jpeg", "denoise"), upscale=True)) == ["denoise", "sr4"]


def test_the_input_s_alpha_comes_back_on_the_restored_image():
    rgba = np.random.default_rng(1).integers(0, 256, (40, 48, 4), dtype=np.uint8)
    photo_with_alpha = PIL.Image.fromarray(rgba, "RGBA")
    pipes = zoo(denoise=ALWAYS)
    restored = restore_auto(photo_with_alpha, pipes, num_inference_steps=1).pil()
    assert restored.mode == "RGBA" and np.array_equal(np.asarray(restored)[..., 3], rgba[..., 3])
    upscaled = restore_auto(
        photo_with_alpha, {**pipes, "sr4": pipeline("sr4", None)}, num_inference_steps=1, upscale=True
    )
    assert upscaled.pil().size == (192, 160) and upscaled.pil().mode == "RGBA"
    assert restore_auto(photo(), pipes, num_inference_steps=1).pil().mode == "RGB"
