"""`python -m benchmarks.bench` (what `indi bench` runs) with tiny settings on a tiny saved pipeline: it runs and writes the JSON it promises.
No timing assertions (2 busy CPU cores make any time meaningless in a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.bench import format_table, main
from benchmarks.timing import time_ms
from indi_pipeline import InDINet, InDIPipeline, InDIScheduler


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = InDINet(width=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1), middle_blocks=1, time_embedding_dim=16)
    folder = tmp_path_factory.mktemp("bench") / "indi-tiny"
    InDIPipeline(unet=net.eval(), scheduler=InDIScheduler(eps=0.02)).save_pretrained(folder)
    return folder


def test_bench_writes_json_with_the_expected_keys(tiny_repo, tmp_path, capsys):
    out = tmp_path / "bench" / "result.json"
    code = main(
        [
            "--model",
            str(tiny_repo),
            "--sizes",
            "32",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--steps",
            "2",
            "--compare-size",
            "32",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) >= {"machine", "model", "settings", "forward", "pipeline_overhead", "unet2d"}
    assert set(results["machine"]) >= {"cpu", "cpu_count", "torch_threads", "torch", "load_average_start"}
    assert results["machine"]["torch"] == torch.__version__
    assert results["machine"]["torch_threads"] == 1
    assert results["model"]["parameters"] == sum(
        p.numel() for p in InDIPipeline.from_pretrained(tiny_repo).unet.parameters()
    )
    (row,) = results["forward"]
    assert row["size"] == 32
    assert set(row) >= {"contiguous_ms", "channels_last_ms", "best_memory_format", "ms"}
    assert row["best_memory_format"] in ("contiguous", "channels_last")
    overhead = results["pipeline_overhead"]
    assert set(overhead) >= {"size", "steps", "pipeline_ms", "raw_forwards_ms", "ratio", "target", "pipeline_alone_ms"}
    assert overhead["steps"] == 2 and overhead["target"] == 1.05
    assert overhead["ratio"] == pytest.approx(overhead["pipeline_ms"] / overhead["raw_forwards_ms"], rel=1e-2)
    assert results["unet2d"] is None
    printed = capsys.readouterr().out
    assert "| one forward, 32x32 |" in printed and "ratio (target <= 1.05)" in printed


def test_unet_comparison_row(tiny_repo, tmp_path):
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "--model",
                str(tiny_repo),
                "--sizes",
                "32",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--steps",
                "1",
                "--compare-size",
                "32",
                "--compare-unet",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    unet = json.loads(out.read_text())["unet2d"]
    assert 2.4e6 < unet["parameters"] < 2.6e6
    assert set(unet) >= {"size", "contiguous_ms", "channels_last_ms", "ms", "times_slower_than_indinet"}
    assert "UNet2DModel" in format_table(json.loads(out.read_text()))


def test_time_ms_interleaves_and_reports_medians():
    calls = []
    stats = time_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert set(stats) == {"a", "b"} and len(stats["a"]["runs_ms"]) == 3


def test_bad_sizes_are_refused(tiny_repo):
    with pytest.raises(SystemExit, match="multiple"):
        main(["--model", str(tiny_repo), "--sizes", "30", "--repeats", "1"])


@pytest.mark.slow
def test_tiled_rows_time_memory_and_seams(tiny_repo, tmp_path, capsys):
    out = tmp_path / "tiled.json"
    assert (
        main(
            [
                "--model",
                str(tiny_repo),
                "--sizes",
                "32",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--steps",
                "2",
                "--compare-size",
                "32",
                "--threads",
                "1",
                "--tiled",
                "--tiled-size",
                "96x64",
                "--seam-size",
                "64",
                "--tile-size",
                "32",
                "--tile-overlap",
                "8",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    tiled = json.loads(out.read_text())["tiled"]
    assert tiled["large"]["width"] == 96 and tiled["large"]["height"] == 64 and tiled["large"]["peak_rss_mb"] > 0
    assert tiled["seams"]["size"] == 64 and tiled["seams"]["psnr_db"] > 20
    assert "tiled vs untiled PSNR" in capsys.readouterr().out


@pytest.mark.slow
def test_compile_rows(tiny_repo, tmp_path, inductor_cache, capsys):
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "--model",
                str(tiny_repo),
                "--sizes",
                "32",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--steps",
                "2",
                "--compare-size",
                "32",
                "--threads",
                "1",
                "--compile",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    compiled = json.loads(out.read_text())["compiled"]
    assert set(compiled) >= {
        "compile_s",
        "forward_eager_ms",
        "forward_compiled_ms",
        "restore_eager_ms",
        "restore_compiled_ms",
        "speedup",
        "compiled_vs_eager_psnr_db",
        "cache_was_warm",
    }
    assert compiled["size"] == 32 and compiled["steps"] == 2
    assert compiled["compiled_vs_eager_psnr_db"] > 60  # the same restoration up to float rounding
    assert "| torch.compile (inductor, frozen weights) | eager | compiled |" in capsys.readouterr().out


def test_a_network_configuration_can_be_timed(tmp_path):
    out = tmp_path / "result.json"
    spec = "InDINet(width=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1), middle_blocks=1, unshuffle=4)"
    assert (
        main(
            [
                "--model",
                spec,
                "--sizes",
                "32",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--steps",
                "1",
                "--compare-size",
                "32",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    model = json.loads(out.read_text())["model"]
    assert model["config"]["unshuffle"] == 4 and model["config"]["width"] == 8
    for bad, word in [
        ("InDINet(width=__import__('os'))", "not InDINet"),
        ("InDINet(8)", "keyword"),
        ("InDINet(colour=3)", "colour"),
    ]:
        with pytest.raises(SystemExit, match=word):
            main(["--model", bad, "--sizes", "32", "--repeats", "1", "--compare-size", "32"])
