"""gpu/gpu_session.sh (which runs zoo/train_zoo.sh) end to end on the CPU with tiny settings: a lent GPU's few
minutes must not be spent finding a shell mistake. Checks the fine-tune path (ZOO_INIT_ROOT), a run without
validation photos (left out of a tight upload), and that the packed tar is a loadable repo with its training record.
"""

import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import save_tiny_repo

pytestmark = pytest.mark.slow  # a whole zoo training session in shell

ROOT = Path(__file__).resolve().parents[2]


def _workspace(tmp_path: Path, photos: str = "data/photos/train") -> Path:
    """A checkout-like folder: train/, zoo/ and gpu/ (the real scripts) and training photos only (no val, as in a
    tight upload)."""
    work = tmp_path / "checkout"
    (work / photos).mkdir(parents=True)
    for folder in ("train", "zoo", "gpu"):
        os.symlink(ROOT / folder, work / folder)
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = (rng.random((80, 80, 3)) * 255).astype(np.uint8)
        PIL.Image.fromarray(pixels).save(work / photos / f"photo{i}.png")
    return work


def test_train_zoo_takes_the_shared_photos_and_the_photo_mix(tmp_path):
    """ZOO_TRAIN_DATA picks the training photos (the shared set a GPU session carries); flags such as
    --degradation_mix reach every run."""
    work = _workspace(tmp_path, "data/shared_photos/train")
    env = dict(os.environ, ZOO_TASKS="denoise", ZOO_TRAIN_DATA="data/shared_photos/train", OMP_NUM_THREADS="1")
    tiny = ["--resolution", "64", "--train_batch_size", "2", "--max_train_steps", "1", "--mixed_precision", "no"]
    tiny += ["--width", "12", "--encoder_blocks", "1", "--decoder_blocks", "1", "--middle_blocks", "1"]
    command = ["bash", str(ROOT / "zoo" / "train_zoo.sh"), str(tmp_path / "zoo"), "0.5", *tiny]
    result = subprocess.run(
        [*command, "--report_to", "none", "--degradation_mix", "photo"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = tmp_path / "zoo" / "indi-denoise.log"
    assert result.returncode == 0, result.stdout[-2000:] + (log.read_text()[-3000:] if log.exists() else "")
    args = json.loads((tmp_path / "zoo" / "indi-denoise" / "train_info.json").read_text())["args"]
    assert args["train_data_dir"] == "data/shared_photos/train" and args["degradation_mix"] == "photo"


def test_gpu_session_fine_tunes_and_packs_a_loadable_repo(tmp_path):
    work = _workspace(tmp_path)
    base = save_tiny_repo(tmp_path / "candidates" / "indi-motion_deblur", task="motion_deblur")
    (base / "train_info.json").write_text(json.dumps({"command": "the base run", "global_step": 7, "history": []}))
    out = tmp_path / "out"
    env = dict(
        os.environ,
        ZOO_TASKS="motion_deblur",
        ZOO_INIT_ROOT=str(tmp_path / "candidates"),
        SKIP_BENCH="1",
        ZOO_GROWN_FLAGS="--encoder_blocks 2 1",
        GPU_SESSION_WORK=str(tmp_path / "session"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PART_BYTES="20000",
    )
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "gpu" / "gpu_session.sh"),
            str(out),
            "0.5",
            "--resolution",
            "64",
            "--train_batch_size",
            "2",
            "--max_train_steps",
            "2",
            "--mixed_precision",
            "no",
            "--report_to",
            "none",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = tmp_path / "session" / "zoo" / "indi-motion_deblur.log"
    assert result.returncode == 0, (
        result.stdout[-2000:] + result.stderr[-2000:] + (log.read_text()[-3000:] if log.exists() else "")
    )
    assert (out / "report.tar.gz").is_file()

    # PART_BYTES is set below the tiny repos' tars, so each comes as parts (a file over 16 MiB would not come back
    # from the lent machine, and a grown net's repo can be bigger), which join into the tar.
    def joined_tar(name: str) -> tarfile.TarFile:
        parts = sorted(out.glob(f"{name}.*"))
        assert len(parts) > 1 and not (out / name).exists()
        assert all(part.stat().st_size <= 20000 for part in parts)
        joined = tmp_path / name
        joined.write_bytes(b"".join(part.read_bytes() for part in parts))
        return tarfile.open(joined)

    with joined_tar("indi-motion_deblur.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    repo = tmp_path / "back" / "indi-motion_deblur"
    info = json.loads((repo / "train_info.json").read_text())
    assert info["args"]["init_from"] == str(base) and info["args"]["validation_data_dir"] is None
    assert info["init_from_train_info"] == {"command": "the base run", "global_step": 7}
    assert json.loads((repo / "unet" / "config.json").read_text())["width"] == 8  # the base's network
    # the record names the session command and the two runs (plain and grown) that shared the device
    assert info["launched_by"].startswith('ZOO_TASKS="motion_deblur" ZOO_INIT_ROOT=')
    assert f"gpu/gpu_session.sh {out} 0.5 --resolution 64" in info["launched_by"]
    assert info["concurrent_runs"] == 2

    # the grown run: the base's network with one more block in the first encoder level
    with joined_tar("indi-motion_deblur-grown.tar") as tar:
        tar.extractall(tmp_path / "grown", filter="data")
    grown = json.loads((tmp_path / "grown" / "indi-motion_deblur" / "unet" / "config.json").read_text())
    assert grown["width"] == 8 and grown["encoder_blocks"] == [2, 1]

    from indi_pipeline import InDIPipeline

    pipe = InDIPipeline.from_pretrained(repo)
    restored = pipe(PIL.Image.new("RGB", (40, 32), (90, 120, 150)), num_inference_steps=2, output_type="np").images
    assert restored.shape == (1, 32, 40, 3) and np.isfinite(restored).all()
