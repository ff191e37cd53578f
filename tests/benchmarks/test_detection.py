"""benchmarks/detection.py: every case runs, the counts add up, the rates follow from them."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import detection
from indi_pipeline.estimation import InDIStartEstimator


def test_cases_count_findings_per_task_and_rates_follow():
    torch.manual_seed(0)
    estimators = {
        "denoise": InDIStartEstimator(width=4, crop=32, max_crops=4, nothing_below=0.0).eval(),  # always present
        "jpeg": InDIStartEstimator(width=4, crop=32, max_crops=4, nothing_below=1.01).eval(),  # never
    }
    photos = [np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8) for k in range(2)]
    result = detection.run(photos, estimators)
    assert result["tasks"] == ["jpeg", "denoise"] and len(result["cases"]) == len(detection.CASES)
    assert all(row["found"] == {"jpeg": 0, "denoise": 2} for row in result["cases"])
    assert result["false_positive_rate_clean"] == {"jpeg": 0.0, "denoise": 1.0}
    assert result["miss_rate"]["jpeg"] == 1.0 and result["miss_rate"]["denoise"] == 0.0
    assert "| clean | nothing | 0/2 | 2/2 |" in detection.format_table(result)


def test_blur_choice_counts_the_right_picks_per_rule():
    torch.manual_seed(0)
    estimators = {  # both always found, equal starts (1): chain_for picks defocus, the larger estimate may differ
        "defocus_deblur": InDIStartEstimator(width=4, crop=32, max_crops=4, nothing_below=0.0).eval(),
        "motion_deblur": InDIStartEstimator(width=4, crop=32, max_crops=4, nothing_below=0.0).eval(),
    }
    photos = [np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8) for k in range(2)]
    counts = detection.blur_choice(photos, estimators)
    chain_rule = counts["later start, defocus on a tie (chain_for)"]
    blur_cases = [name for name, damages in detection.CASES.items() if any("deblur" in d.task for d in damages)]
    assert list(chain_rule) == blur_cases and all(seen == 2 for _, seen in chain_rule.values())
    assert chain_rule["defocus r 4"] == [2, 2] and chain_rule["shake 15 px"] == [0, 2]
