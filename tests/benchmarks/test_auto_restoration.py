"""benchmarks/auto_restoration.py: the oracle chain follows the true damages, every method is scored per case, and
the table and the targets follow from the scores."""

from __future__ import annotations

import torch
from conftest import make_tiny_pipeline

from benchmarks import auto_restoration, detection
from indi_pipeline.estimation import InDIStartEstimator


def tiny_pipeline(task: str, nothing_below: float):
    """A tiny real pipeline whose estimator always (nothing_below 0) or never (above 1) finds its degradation."""
    pipe = make_tiny_pipeline(eps=0.0, seed=0, task=task)
    torch.manual_seed(0)
    estimator = InDIStartEstimator(width=8, crop=32, max_crops=4, task=task, nothing_below=nothing_below)
    pipe.register_modules(estimator=estimator.eval())
    return pipe


def test_the_oracle_chain_is_the_true_damages_in_chain_order_at_their_true_t():
    damages = detection.CASES["noise 10 then defocus r 2 then JPEG 50"]
    assert auto_restoration.oracle_chain(damages) == [("jpeg", 1.0), ("denoise", 0.2), ("defocus_deblur", 1.0)]
    assert auto_restoration.oracle_chain(detection.CASES["clean"]) == []


def test_run_scores_every_method_per_case_and_counts_the_findings(monkeypatch):
    pipes = {"jpeg": tiny_pipeline("jpeg", nothing_below=1.01), "denoise": tiny_pipeline("denoise", nothing_below=0.0)}
    monkeypatch.setattr(
        auto_restoration, "CASES", {k: detection.CASES[k] for k in ("clean", "noise 15/255", "noise 15 then JPEG 60")}
    )
    monkeypatch.setattr(detection, "CASES", auto_restoration.CASES)
    crops = [("a", (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).round() / 255)]
    result = auto_restoration.run(crops, pipes)
    assert [row["case"] for row in result["cases"]] == ["clean", "noise 15/255", "noise 15 then JPEG 60"]
    clean, noisy, compound = result["cases"]
    assert set(clean["psnr_lpips"]) == {"input", "single: jpeg", "single: denoise", "auto",
                                         "auto, re-estimating", "oracle chain"}  # fmt: skip
    assert clean["psnr_lpips"]["input"][0] == 100.0 and clean["psnr_lpips"]["oracle chain"][0] == 100.0
    assert clean["crops_at_least_40db"] is not None and noisy["crops_at_least_40db"] is None
    assert noisy["auto_chains"] == {"denoise": 1} and noisy["best_single"] in ("jpeg", "denoise")
    assert compound["oracle_chain"] == [("jpeg", 1.0), ("denoise", 0.3)]
    assert result["detection"]["cases"][1]["found"] == {"jpeg": 0, "denoise": 1}
    assert result["detection"]["miss_rate"]["jpeg"] == 1.0
    table = auto_restoration.format_table(result)
    assert table.count("\n") == 2 + len(result["cases"]) - 1 and "| clean | 100.00 / 0.000 |" in table
