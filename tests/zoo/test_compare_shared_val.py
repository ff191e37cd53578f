"""zoo/compare_shared_val.py: two runs of real evaluations compared paired, against the zoo targets and peers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from helpers import evaluate_tiny, smooth_photos, tiny_repo

from zoo import compare_shared_val


@pytest.fixture(scope="module")
def sr4_result(tmp_path_factory) -> dict:
    """A real eval_indi result of a tiny sr4 repo (perturbed: its steps differ), as the script reads it."""
    folder = tmp_path_factory.mktemp("eval")
    return evaluate_tiny(
        tiny_repo(folder / "repo", "sr4", identity=False), smooth_photos(folder / "photos", count=3), "sr4"
    )


def write_run(folder: Path, *results: dict) -> Path:
    for result in results:
        out = folder / f"indi-{result['task']}"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"eval_{result['setting']}.json").write_text(json.dumps(result))
    return folder


def test_a_run_against_itself_is_paired_zero_and_a_shifted_run_gains_what_it_was_shifted(tmp_path, sr4_result):
    better = copy.deepcopy(sr4_result)
    better["per_image_psnr"]["one_step"] = [p + 0.5 for p in better["per_image_psnr"]["one_step"]]
    better["gain_over_input_db_one_step"] += 0.5
    runs = {
        "bundled": compare_shared_val.load_run(write_run(tmp_path / "a", sr4_result)),
        "new": compare_shared_val.load_run(write_run(tmp_path / "b", better)),
    }
    (row,) = compare_shared_val.compare(runs)
    assert (row["task"], row["setting"]) == ("sr4", "default")
    assert row["runs"]["bundled"]["paired_vs_first"] is None
    paired = row["runs"]["new"]["paired_vs_first"]
    assert paired["mean_db"] == pytest.approx(0.5) and paired["crops_better"] == paired["crops"] == 3
    assert paired["standard_error_db"] == pytest.approx(0.0, abs=1e-9)
    goal = row["runs"]["bundled"]["target"]  # sr4: +1.5 dB over bicubic; a tiny random net is far from it
    assert goal["target"] == "+1.5 dB over the input" and goal["met"] is False
    assert row["runs"]["new"]["target"]["margin_db"] == pytest.approx(goal["margin_db"] + 0.5)
    table = compare_shared_val.format_table([row], ["bundled", "new"])
    assert "+0.500 ± 0.000 (3/3 crops up)" in table and "**missed**" in table


def test_the_trade_off_rule_and_a_peer_target_read_from_the_table(sr4_result):
    result = copy.deepcopy(sr4_result)
    rows = [r for r in result["table"] if r["method"] == "InDI" and r["eps"] == result["model_eps"]]
    one = next(r for r in rows if r["steps"] == 1)
    two = next(r for r in rows if r["steps"] == 2)
    two.update(psnr=one["psnr"] - 0.5, lpips=one["lpips"] * 0.8)
    assert compare_shared_val.trade_off(result) == pytest.approx(
        {"steps": 2, "lpips_reduction": 0.2, "psnr_drop": 0.5, "met": True}
    )
    two.update(psnr=one["psnr"] - 1.5)  # more than 1 dB below 1 step: not within the rule
    assert compare_shared_val.trade_off(result)["met"] is False
    result.update(task="denoise", setting="sigma25")
    result["table"].append({"method": "CDnCNN-S (sigma 25 only)", "psnr": one["psnr"] + 0.25, "lpips": 0.1})
    goal = compare_shared_val.target(result)
    assert goal["met"] is False and goal["margin_db"] == pytest.approx(-0.25)
    # Every peer in the run is reported beside the model (BM3D where the optional package was installed).
    result["table"].append({"method": "BM3D (true sigma)", "psnr": one["psnr"] - 0.1, "lpips": 0.2})
    assert list(compare_shared_val.peers(result)) == ["CDnCNN-S (sigma 25 only)", "BM3D (true sigma)"]


def test_runs_on_different_crops_are_refused(tmp_path, sr4_result):
    other = copy.deepcopy(sr4_result)
    other["images"] = other["images"][::-1]
    with pytest.raises(ValueError, match="different crops"):
        compare_shared_val.paired(sr4_result, other)
    with pytest.raises(SystemExit):
        compare_shared_val.main(["--run", f"x={tmp_path / 'missing'}"])


def test_an_evaluation_without_per_crop_psnr_compares_by_its_means_only(tmp_path, sr4_result):
    """Older card evaluations lack per-crop PSNR: the table says so instead of failing on the missing key."""
    older = copy.deepcopy(sr4_result)
    del older["per_image_psnr"]
    assert compare_shared_val.paired(older, sr4_result) is None
    runs = {
        "card": compare_shared_val.load_run(write_run(tmp_path / "a", older)),
        "new": compare_shared_val.load_run(write_run(tmp_path / "b", sr4_result)),
    }
    (row,) = compare_shared_val.compare(runs)
    assert row["runs"]["new"]["paired_vs_first"] is None
    assert "not paired (no per-crop PSNR)" in compare_shared_val.format_table([row], ["card", "new"])
