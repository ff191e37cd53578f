"""benchmarks/blind_restoration.py: its families, the JPEG files it hands to auto, and its table."""

from __future__ import annotations

import torch

from benchmarks import blind_restoration
from indi_pipeline.degradations import degradation_generator
from indi_pipeline.jpeg_quality import jpeg_quality_of


def test_families_include_clean_and_off_training_inputs():
    for task_id in ("denoise", "jpeg", "defocus_deblur", "motion_deblur"):
        names = blind_restoration.families(task_id)
        assert "clean" in names and any(name.endswith("*") for name in names)
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        for degrade, _ in names.values():
            assert degrade(x, degradation_generator(0)).shape == x.shape


def test_jpeg_families_reach_auto_as_files_with_their_last_tables():
    assert blind_restoration.last_jpeg_quality("JPEG q20 then q80*") == 80
    assert blind_restoration.last_jpeg_quality("JPEG q10") == 10
    assert blind_restoration.last_jpeg_quality("clean") is None
    y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    image = blind_restoration.as_jpeg_file(y, 80)
    assert jpeg_quality_of(image).quality == 80


def test_table_has_a_row_per_family_and_the_jpeg_readings():
    means = {k: (30.0, 0.1) for k in ("input", "auto, 1 step", "strength 1, 1 step", "strength 1, 1 step",
                                      "auto, 4 steps", "strength 1, 4 steps", "auto, pixels only, 1 step",
                                      "auto, tables only, 1 step")}  # fmt: skip
    row = {"family": "JPEG q30", "estimate_mean": 0.8, "start_mean": 1.0, "true_t_mean": None,
           "oracle_strength": 1.0, "psnr_lpips": means}  # fmt: skip
    table = blind_restoration.format_table({"task": "jpeg", "default_steps": 4, "families": [row]})
    assert "| JPEG q30 | 0.80 | 1.00 |" in table and "30.00 / 0.100 · 30.00 / 0.100" in table
