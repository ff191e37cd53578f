"""Golden outputs of the bundled models: a changed weight or a changed walk is caught in seconds.

For each bundled repo (model_cards/indi-<task>; skipped where its model_index.json is missing) a fixed 64x64 crop
of examples/cups.png is degraded with ``degrade(task, x, generator=degradation_generator(0))`` (sr4: the pipeline is
given the LR image, as ``pipeline_input`` says), restored in fp32 at 1 and 4 steps with ``strength=1``, the
registry's eps and ``torch.Generator().manual_seed(0)``, and compared with tests/data/golden.json: the mean, the
standard deviation, a 4x4 average-pooled thumbnail and 16 single pixels (a 4x4 grid, every channel) of the result,
and the mean, standard deviation and the same pixels of the degraded input (so that a failure says whether the
degradation or the restoration moved).

``TOLERANCE`` (absolute, on values in [0, 1]) sits between the two effects it must tell apart. Float rounding: the
same walk with the network in float64 differs from fp32 by about 5e-7 per pixel at most. A real change: scaling
the weights of the middle convolution by 1.01 moves some of the 16 pixels by about 1e-4 or more in every model, the
registry's eps times 1.1 by about 3e-4 or more (both measured on a 2-core Intel Xeon VM, torch 2.13.0+cpu).
Averages hide such changes (a pixel's change is of either sign), hence the single pixels.

After an intended change (a retrained model, a new walk), regenerate the file and commit it with the change:

    python tests/zoo/test_golden.py --regenerate [--tasks denoise ...]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from indi_pipeline.degradations import degradation_generator, degrade, pil_to_tensor, pipeline_input
from indi_pipeline.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden.json"
EXAMPLE = ROOT / "examples" / "cups.png"
CROP = (224, 160, 288, 224)  # (left, top, right, bottom): the middle 64x64 of the 512x384 photo
STEPS = (1, 4)
SEED = 0
TOLERANCE = 5e-5


def repo(task: str) -> Path:
    return ROOT / "model_cards" / TASKS[task].repo_name


def _stats(x: torch.Tensor, thumbnail: bool = True) -> dict:
    """Mean, standard deviation, the 4x4 average-pooled thumbnail and a 4x4 grid of single pixels (each 3 x 4 x 4)
    of a (1, 3, 64, 64) image."""
    x = x.double()
    values = {"mean": x.mean().item(), "std": x.std().item()}
    if thumbnail:
        values["thumbnail"] = F.adaptive_avg_pool2d(x, 4)[0].tolist()
    values["pixels"] = x[0, :, 8::16, 8::16].tolist()
    return _rounded(values)


def _rounded(value):
    """Six decimals (rounding moves a value by 5e-7, a hundredth of TOLERANCE): golden.json stays readable."""
    if isinstance(value, dict):
        return {key: _rounded(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 6)


def golden_values(task: str) -> dict:
    """What golden.json holds for ``task``: the degraded input's statistics and those of each step count's result."""
    from indi_pipeline import InDIPipeline

    spec = TASKS[task]
    clean = pil_to_tensor(Image.open(EXAMPLE).convert("RGB").crop(CROP))
    degraded = degrade(task, clean, generator=degradation_generator(SEED))
    model_input = pipeline_input(clean, degraded, spec.upscale_factor)
    pipe = InDIPipeline.from_pretrained(str(repo(task)), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.autocast_dtype = None  # fp32 on every machine: bf16 autocast would make the values depend on the CPU
    values = {"input": _stats(degraded, thumbnail=False)}
    for steps in STEPS:
        restored = pipe(
            model_input,
            num_inference_steps=steps,
            strength=1.0,
            eps=spec.eps,
            generator=torch.Generator().manual_seed(SEED),
            output_type="pt",
        ).images
        assert restored.shape == clean.shape, restored.shape
        values[str(steps)] = _stats(restored)
    return values


def _differences(expected, actual, where: str = "") -> list[str]:
    """Every number of ``actual`` further than TOLERANCE from ``expected``, named by its path."""
    if isinstance(expected, dict):
        return [d for key in expected for d in _differences(expected[key], actual[key], f"{where}/{key}")]
    if isinstance(expected, list):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f"{where}[{i}]")]
    return [] if math.isclose(expected, actual, abs_tol=TOLERANCE) else [f"{where}: {actual:.6f}, stored {expected}"]


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("task", list(TASKS))
def test_bundled_model_restores_the_golden_crop(task, golden):
    if not (repo(task) / "model_index.json").is_file():
        pytest.skip(f"no bundled model at {repo(task)}")
    assert task in golden["models"], f"no golden values for {task}: python tests/zoo/test_golden.py --regenerate"
    assert golden["crop"] == list(CROP) and golden["steps"] == list(STEPS) and golden["seed"] == SEED
    expected, actual = golden["models"][task], golden_values(task)
    input_moved = _differences(expected["input"], actual["input"], "input")
    assert not input_moved, f"{task}: the degradation changed, not (only) the model: {input_moved}"
    moved = _differences(expected, actual)
    assert not moved, (
        f"{task}: {len(moved)} values moved by more than {TOLERANCE} (first: {moved[:5]}). If the model or the walk "
        "changed on purpose: python tests/zoo/test_golden.py --regenerate"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help=f"rewrite {GOLDEN.relative_to(ROOT)}")
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=sorted(TASKS),
        help="regenerate only these models and keep the stored values of the others (another CPU rounds a little "
        "differently: unchanged models should not churn)",
    )
    args = parser.parse_args(argv)
    if not args.regenerate:
        parser.error("nothing to do: pass --regenerate (the check itself runs under pytest)")
    torch.set_num_threads(1)  # as the tests run (conftest.py)
    from diffusers.utils import logging

    logging.disable_progress_bar()
    bundled = [task for task in TASKS if (repo(task) / "model_index.json").is_file()]
    stored = json.loads(GOLDEN.read_text())["models"] if args.tasks and GOLDEN.is_file() else {}
    missing = [task for task in bundled if task not in stored and task not in (args.tasks or bundled)]
    if missing:
        parser.error(f"{GOLDEN.relative_to(ROOT)} has no values for {', '.join(missing)}: regenerate them too")

    def values(task: str) -> dict:
        return golden_values(task) if not args.tasks or task in args.tasks else stored[task]

    document = {
        "about": "tests/zoo/test_golden.py: regenerate with `python tests/zoo/test_golden.py --regenerate`",
        "image": EXAMPLE.relative_to(ROOT).as_posix(),
        "crop": list(CROP),
        "steps": list(STEPS),
        "seed": SEED,
        "models": {task: values(task) for task in bundled},
    }
    text = json.dumps(document, indent=1)
    # one line per list of numbers (a thumbnail row, the crop): the file stays short enough to review in a diff
    text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    GOLDEN.write_text(text + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}: {', '.join(args.tasks or bundled)} regenerated")


if __name__ == "__main__":
    main()
