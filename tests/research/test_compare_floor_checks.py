"""research/compare_floor_checks.py: paired differences of two floor checks, draw by draw."""

import json
from pathlib import Path

import pytest

from research import compare_floor_checks

ROOT = Path(__file__).resolve().parents[2]


def _floor_check(gains, task="motion_deblur", crops=32, first_seed=0):
    sets = [{"seed": first_seed + crops * k, "gain_db": g, "gain_db_eps0": g + 0.1} for k, g in enumerate(gains)]
    return {
        "task": task,
        "setting": "default",
        "crops_per_set": crops,
        "sets": sets,
        "gain_db_mean": sum(gains) / len(gains),
        "gain_db_sem": 0.1,
    }


def test_paired_difference_follows_the_draws_not_the_noisy_means():
    reference = _floor_check([1.0, 1.6, 1.2, 1.4])
    other = _floor_check([1.1, 1.7, 1.2, 1.6])
    diff = compare_floor_checks.paired_difference(reference, other)
    assert diff["sets"] == 4 and diff["higher_in"] == 3
    assert diff["mean"] == pytest.approx(0.1)
    assert diff["differences"] == pytest.approx([0.1, 0.1, 0.0, 0.2])
    assert diff["sem"] == pytest.approx(0.0408248, abs=1e-6)  # std(ddof=1) / sqrt(4)


def test_only_the_seed_sets_both_have_are_paired():
    reference = _floor_check([1.0, 1.5, 2.0])
    other = _floor_check([1.5, 2.5], first_seed=32)  # seeds 32 and 64: the reference's second and third sets
    diff = compare_floor_checks.paired_difference(reference, other)
    assert diff["sets"] == 2 and diff["differences"] == pytest.approx([0.0, 0.5])


@pytest.mark.parametrize(
    "other, message",
    [
        (_floor_check([1.0, 1.1], task="defocus_deblur"), "not the same draws: task"),
        (_floor_check([1.0, 1.1], crops=16), "not the same draws: crops_per_set"),
        (_floor_check([1.0, 1.1], first_seed=1000), "share 0 seed set(s)"),
    ],
)
def test_floor_checks_of_different_draws_are_refused(other, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_floor_checks.paired_difference(_floor_check([1.0, 1.2]), other)


def test_main_prints_a_row_per_model_and_names_a_mismatch(tmp_path, capsys):
    paths = []
    for name, gains in (("ref", [1.0, 1.2]), ("new", [1.3, 1.4])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_floor_check(gains)))
    rows = compare_floor_checks.main([str(p) for p in paths])
    assert rows[0]["gain_db"]["mean"] == pytest.approx(0.25)
    assert f"| {paths[1]} | 2 | +1.350 ± 0.100 | +0.250 ± 0.050 | 2 of 2 | +0.250 ± 0.050 |" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps(_floor_check([1.0, 1.1], task="sr4")))
    with pytest.raises(SystemExit, match="other.json against .*ref.json: not the same draws: task"):
        compare_floor_checks.main([str(paths[0]), str(tmp_path / "other.json")])
