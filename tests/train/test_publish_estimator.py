"""A repo with a start estimator through train/publish.py: its estimator/ is staged with generated remote code, and
diffusers alone (no indi_pipeline importable) runs strength="auto" on a JPEG file as the installed library does."""

from __future__ import annotations

import io
import json
import os
import site
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_net
from test_publish import card_metadata, publish, write_card

from indi_pipeline import InDIPipeline, InDIScheduler
from indi_pipeline.estimation import InDIStartEstimator

SCRIPT = r"""
import importlib.util, io, json, sys
site_dirs, staging, jpeg_file, out_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sys.path.extend(site_dirs)  # -I -S: no cwd, no PYTHONPATH, no .pth files (so no editable indi_pipeline finder)
assert importlib.util.find_spec("indi_pipeline") is None, "indi_pipeline is importable"
import numpy as np, PIL.Image, torch
from diffusers import DiffusionPipeline
torch.set_num_threads(1)
pipe = DiffusionPipeline.from_pretrained(staging, trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
out = pipe(PIL.Image.open(jpeg_file), num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
np.save(out_file, out.images)
print(json.dumps({"estimator": type(pipe.estimator).__module__, "start_t": out.start_t,
                  "estimated_t": out.estimated_t, "jpeg_quality": out.jpeg_quality}))
"""


@pytest.mark.slow
def test_published_estimator_runs_auto_with_plain_diffusers(tmp_path):
    torch.manual_seed(0)
    estimator = InDIStartEstimator(width=8, crop=32, max_crops=4, task="jpeg", nothing_below=0.0,
                                   quality_curve=[[10, 0.9], [95, 0.1]]).half()  # fmt: skip
    pipe = InDIPipeline(unet=make_tiny_net(), scheduler=InDIScheduler(eps=0.0), task="jpeg", estimator=estimator)
    folder = tmp_path / "indi-tiny-jpeg"
    pipe.save_pretrained(folder)
    metadata = card_metadata()
    metadata["tags"] = ["indi", "image-restoration", "jpeg"]
    write_card(folder, metadata)
    (folder / "train_info.json").write_text(json.dumps({"task": "jpeg", "global_step": 5}))
    (folder / "estimator" / "train_info.json").write_text(json.dumps({"task": "jpeg", "steps": 5}))
    staging = tmp_path / "staging"
    files = {f.path for f in publish.main([str(folder), "--repo_id", "org/indi-tiny-jpeg", "--dry_run",
                                           "--staging_dir", str(staging)])}  # fmt: skip
    assert {"estimator/config.json", "estimator/diffusion_pytorch_model.safetensors",
            "estimator/train_info.json", "estimator/indi_pipeline.estimation.py"} <= files  # fmt: skip

    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, "JPEG", quality=30)
    jpeg_file = tmp_path / "photo.jpg"
    jpeg_file.write_bytes(buffer.getvalue())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "DIFFUSERS_VERBOSITY": "error"}  # fmt: skip
    out_file = tmp_path / "restored.npy"
    command = [sys.executable, "-I", "-S", "-c", SCRIPT, json.dumps(site.getsitepackages()), str(staging),
               str(jpeg_file), str(out_file)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["estimator"].endswith(".indi_pipeline.estimation")  # the repo's generated file
    assert report["jpeg_quality"] == [30]

    installed = InDIPipeline.from_pretrained(folder)
    installed.set_progress_bar_config(disable=True)
    expected = installed(PIL.Image.open(jpeg_file), num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                         output_type="np")  # fmt: skip
    assert report["start_t"] == pytest.approx(expected.start_t) and report["estimated_t"] == pytest.approx(
        expected.estimated_t
    )
    np.testing.assert_allclose(np.load(out_file), expected.images, atol=1e-6)
