"""The `indi` command line, in-process (``main([...])``) and once as ``python -m indi_pipeline``, on a tiny
pipeline repo saved in a temporary folder. Offline: conftest.py sets HF_HUB_OFFLINE before anything imports the Hub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import save_tiny_repo

from indi_pipeline.cli import main
from indi_pipeline.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return save_tiny_repo(tmp_path_factory.mktemp("repo") / "indi-tiny")


@pytest.fixture(scope="module")
def tiny_sr_repo(tmp_path_factory) -> Path:
    return save_tiny_repo(tmp_path_factory.mktemp("repo") / "indi-tiny-sr4", upscale_factor=4, task="sr4")


def write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": None, "RGBA": 4}[mode]
    shape = (height, width) if channels is None else (height, width, channels)
    PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("indi: error:")]


def test_restore_writes_pngs_of_the_input_size(tiny_repo, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "a.png", 40, 28)
    write_image(inputs / "b.jpg", 33, 21, mode="L")  # odd size, grayscale: padded and cropped back
    out = tmp_path / "out"
    code = main(
        [
            "restore",
            str(inputs / "a.png"),
            str(inputs / "b.jpg"),
            "--task",
            "jpeg",
            "--model",
            str(tiny_repo),
            "--steps",
            "2",
            "--output-dir",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    a = PIL.Image.open(out / "a_jpeg_2steps.png")
    b = PIL.Image.open(out / "b_jpeg_2steps.png")
    assert a.format == b.format == "PNG"
    assert a.size == (40, 28) and a.mode == "RGB"
    assert b.size == (33, 21) and b.mode == "L"
    stdout = capsys.readouterr().out
    # One progress line per file, with the time it took.
    assert len(re.findall(r"^\[\d/2\] .* -> .* \d+\.\d\d s$", stdout, flags=re.M)) == 2


def test_restore_is_seeded_and_sigma_sets_strength(tiny_repo, tmp_path):
    image = write_image(tmp_path / "noisy.png", 32, 32)
    common = ["restore", str(image), "--task", "denoise", "--model", str(tiny_repo), "--steps", "2", "--device", "cpu"]
    assert main([*common, "--output-dir", str(tmp_path / "o1"), "--seed", "3"]) == 0
    assert main([*common, "--output-dir", str(tmp_path / "o2"), "--seed", "3"]) == 0
    assert main([*common, "--output-dir", str(tmp_path / "o3"), "--sigma", "25"]) == 0
    first, again, half = (
        np.asarray(PIL.Image.open(tmp_path / d / "noisy_denoise_2steps.png")) for d in ("o1", "o2", "o3")
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, half)  # strength 0.5 starts the walk elsewhere


def test_sigma_is_checked(tiny_repo, tmp_path):
    image = write_image(tmp_path / "x.png", 32, 32)
    with pytest.raises(SystemExit, match="--sigma is for --task denoise only"):
        main(["restore", str(image), "--task", "jpeg", "--model", str(tiny_repo), "--sigma", "25"])
    with pytest.raises(SystemExit, match="outside"):
        main(["restore", str(image), "--task", "denoise", "--model", str(tiny_repo), "--sigma", "80"])


def test_super_resolution_output_is_4x_larger(tiny_sr_repo, tmp_path):
    image = write_image(tmp_path / "small.png", 12, 9)
    code = main(
        [
            "restore",
            str(image),
            "--task",
            "sr4",
            "--model",
            str(tiny_sr_repo),
            "--steps",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert PIL.Image.open(tmp_path / "out" / "small_sr4_1steps.png").size == (48, 36)


def test_bad_files_get_one_line_each_and_the_good_one_is_still_written(tiny_repo, tmp_path, capsys):
    good = write_image(tmp_path / "good.png", 32, 24)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:80])
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    code = main(
        [
            "restore",
            str(text),
            str(good),
            str(truncated),
            str(missing),
            "--task",
            "jpeg",
            "--model",
            str(tiny_repo),
            "--steps",
            "2",
            "--output-dir",
            str(out),
        ]
    )
    assert code != 0
    assert PIL.Image.open(out / "good_jpeg_2steps.png").size == (32, 24)
    assert sorted(p.name for p in out.iterdir()) == ["good_jpeg_2steps.png"]
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 3
    for bad in (text, truncated, missing):
        assert sum(str(bad) in line for line in errors) == 1, (bad, errors)
    assert any("not an image" in line for line in errors if str(text) in line)
    assert any("truncated" in line.lower() for line in errors if str(truncated) in line)


def test_max_megapixels_is_counted_at_the_output_size(tiny_repo, tiny_sr_repo, tmp_path, capsys):
    """The pixel limit (the decompression-bomb and 8000x8000 rows are in test_hostile_inputs.py) is a flag, counted
    at the restored size: 16x the input's pixels for sr4."""
    image = write_image(tmp_path / "small.png", 40, 25)  # 1000 px; restored 4x larger: 16000 px
    common = ["--steps", "1", "--output-dir", str(tmp_path / "out"), "--max-megapixels", "0.01"]
    assert main(["restore", str(image), "--task", "jpeg", "--model", str(tiny_repo), *common]) == 0
    assert main(["restore", str(image), "--task", "sr4", "--model", str(tiny_sr_repo), *common]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "40x25 px, restored 4x larger to 160x100 = 0.02 MP; the limit is 0.01 MP" in line
    assert "--max-megapixels" in line
    with pytest.raises(SystemExit):
        main(["restore", str(image), "--task", "jpeg", "--max-megapixels", "-1"])
    assert "must be a number >= 0" in capsys.readouterr().err


def test_folders_expand_and_inputs_are_never_overwritten(tiny_repo, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.png", 32, 32, seed=1)
    # An input that carries the name the first one's output would get:
    clash = write_image(folder / "a_jpeg_1steps.png", 32, 32, seed=2)
    before = clash.read_bytes()
    (folder / "readme.txt").write_text("not an image, and not picked up from a folder")
    code = main(
        [
            "restore",
            str(folder),
            "--task",
            "jpeg",
            "--model",
            str(tiny_repo),
            "--steps",
            "1",
            "--output-dir",
            str(folder),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert clash.read_bytes() == before
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["a.png", "a_jpeg_1steps-2.png", "a_jpeg_1steps.png", "a_jpeg_1steps_jpeg_1steps.png", "readme.txt"]


def test_missing_model_names_the_local_folder_and_the_hub_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("INDI_MODEL_DIR", str(tmp_path / "no_models_here"))
    monkeypatch.setenv("INDI_HUB_ORG", "indi-test-org-that-does-not-exist")
    image = write_image(tmp_path / "x.png", 32, 32)
    with pytest.raises(SystemExit) as info:
        main(["restore", str(image), "--task", "motion_deblur", "--output-dir", str(tmp_path / "out")])
    message = str(info.value)
    assert str(tmp_path / "no_models_here" / "indi-motion_deblur") in message
    assert "indi-test-org-that-does-not-exist/indi-motion_deblur" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_the_registry_folder_is_used_without_model(tiny_repo, tmp_path, monkeypatch):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_repo, models / "indi-defocus_deblur")
    monkeypatch.setenv("INDI_MODEL_DIR", str(models))
    image = write_image(tmp_path / "x.png", 32, 32)
    assert main(["restore", str(image), "--task", "defocus_deblur", "--steps", "1", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "x_defocus_deblur_1steps.png").exists()


@pytest.mark.parametrize("task", list(TASKS))
def test_degrade_writes_the_right_size(task, tmp_path):
    image = write_image(tmp_path / "clean.png", 42, 37)
    assert main(["degrade", str(image), "--task", task, "--seed", "1", "--output-dir", str(tmp_path / "out")]) == 0
    degraded = PIL.Image.open(tmp_path / "out" / f"clean_{task}.png")
    expected = (42 // 4, 37 // 4) if task == "sr4" else (42, 37)  # sr4: cropped to 40x36, then 4x smaller
    assert degraded.size == expected and degraded.format == "PNG"


def test_degrade_options_and_bad_files(tmp_path, capsys):
    image = write_image(tmp_path / "clean.png", 32, 32)
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code = main(
        ["degrade", str(image), str(bad), "--task", "denoise", "--sigma", "20", "--output-dir", str(tmp_path / "o")]
    )
    assert code == 1
    assert (tmp_path / "o" / "clean_denoise.png").exists()
    assert len(error_lines(capsys.readouterr().err)) == 1
    with pytest.raises(SystemExit, match="--quality is for --task jpeg only"):
        main(["degrade", str(image), "--task", "sr4", "--quality", "20"])


def test_unknown_task_is_a_clear_error(tmp_path, capsys):
    image = write_image(tmp_path / "x.png", 16, 16)
    for command in ("restore", "degrade"):
        with pytest.raises(SystemExit) as info:
            main([command, str(image), "--task", "deblur_everything"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'deblur_everything'" in err and "motion_deblur" in err


def test_tasks_lists_the_registry(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task in TASKS.values():
        assert task.task_id in out and task.hub_repo_id in out


def test_every_flag_has_help():
    from indi_pipeline.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"indi {name} {action.option_strings or action.dest} has no help"


@pytest.mark.slow
def test_python_dash_m_subprocess(tiny_repo, tmp_path):
    good = write_image(tmp_path / "ok.png", 32, 32)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "indi_pipeline",
            "restore",
            str(bad),
            str(good),
            "--task",
            "jpeg",
            "--model",
            str(tiny_repo),
            "--steps",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "ok_jpeg_2steps.png").exists()
    (line,) = error_lines(result.stderr)
    assert str(bad) in line
    assert "ok.png" in result.stdout


@pytest.mark.slow
def test_accelerate_launch_shares_a_folder_and_matches_one_process(tiny_repo, tmp_path):
    import socket

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        write_image(folder / f"p{i}.png", 24 + 8 * i, 32, seed=i)
    flags = ["--task", "jpeg", "--model", str(tiny_repo), "--steps", "2", "--seed", "3"]
    assert main(["restore", str(folder), *flags, "--output-dir", str(tmp_path / "one")]) == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            "-m",
            "indi_pipeline",
            "restore",
            str(folder),
            *flags,
            "--output-dir",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "process 1/2" in result.stdout and "process 2/2" in result.stdout
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(one) == 5
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_readme_and_ci_agree():
    """CI runs exactly the README's test command; the Space header names the bundled model repos of the registry."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^TEST_COMMAND='(.+)'$", ci, flags=re.M)
    assert match, "no TEST_COMMAND in .ci/run"
    assert f"\n{match.group(1)}\n" in readme
    assert os.access(REPO_ROOT / ".ci" / "run", os.X_OK)
    front_matter = readme.split("---")[1]
    for task in TASKS.values():
        bundled = (task.local_path / "model_index.json").is_file()
        assert (f"indi-zoo/{task.repo_name}" in front_matter) == bundled, task.task_id


def test_registry_defaults_are_the_bundled_models_and_the_readme_s():
    """The app and CLI restore with the registry's eps by default: it must be the eps each bundled model was trained
    with (else the Space's default result is not what the card measured), and README's Tasks table must show both.
    Their default steps are the card's recommended ones or fewer (tasks.py says where fewer, and why): more would
    spend the visitor's time on a point the card does not recommend (the motion card moved from 8 to 4 steps)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for task in TASKS.values():
        config = task.local_path / "scheduler" / "scheduler_config.json"
        if config.is_file():
            assert json.loads(config.read_text())["eps"] == task.eps, task.task_id
        evaluation = task.local_path / "eval_default.json"
        if evaluation.is_file():
            assert task.default_steps <= json.loads(evaluation.read_text())["recommended_steps"], task.task_id
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{task.task_id}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert (int(cells[3]), float(cells[4])) == (task.default_steps, task.eps), row


@pytest.mark.parametrize(
    "code",
    [
        "import indi_pipeline.tasks",
        "import indi_pipeline",
        "from indi_pipeline.cli import main; main(['tasks'])",
        "from indi_pipeline.cli import build_parser; build_parser().format_help()",
    ],
)
def test_light_entry_points_import_neither_torch_nor_diffusers(code):
    """`indi --help`, `indi tasks` and `import indi_pipeline.tasks` stay instant: torch and diffusers load lazily."""
    probe = f"import sys; {code}; print(sorted({{'torch', 'diffusers'}} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_lazy_package_exports_its_public_names():
    import indi_pipeline

    assert set(indi_pipeline.__all__) <= set(dir(indi_pipeline))
    from indi_pipeline.pipeline_indi import InDIPipeline

    assert indi_pipeline.InDIPipeline is InDIPipeline
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        indi_pipeline.nope  # noqa: B018


@pytest.mark.slow
def test_indi_bench_runs_the_checkout_benchmark(tmp_path):
    """`indi bench` is a thin entry point: it runs benchmarks/bench.py of the checkout and passes its arguments on."""
    result = subprocess.run(
        [sys.executable, "-m", "indi_pipeline", "bench", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "python -m benchmarks.bench" in result.stdout and "--compare-unet" in result.stdout
