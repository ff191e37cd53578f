"""train/gpu_bench.py runs end to end (on the CPU, tiny repo, tiny image): the GPU session only has to run it."""

import json

from conftest import save_tiny_repo

from benchmarks import gpu_bench


def test_gpu_bench_rows_on_the_cpu(tmp_path, capsys):
    repo = save_tiny_repo(tmp_path / "repo")
    out = tmp_path / "gpu_inference.json"
    gpu_bench.main(
        ["--model", str(repo), "--size", "32", "--steps", "2", "--repeats", "1", "--device", "cpu", "--json", str(out)]
    )
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["size"] == 32 and result["steps"] == 2
    assert set(result["rows"]) == {"eager fp32", "bf16 + channels_last"}
    assert result["rows"]["bf16 + channels_last"]["psnr_vs_fp32_db"] > 25  # bf16 rounding only
    assert "MP/s" in capsys.readouterr().out
