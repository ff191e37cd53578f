"""The README's picture: per task, a degraded example photo, its 1-step restoration and the card's recommended steps.

Each row takes a 256 px crop of the task's example photo in `examples/` (validation photos, never trained on; the
Space's example rows use the same photo per task), degrades it with the library's own degradation drawing from
`degradation_generator(SEED)`, and restores it with the bundled model repo `model_cards/indi-<task>` through
`InDIPipeline` (fp32, walk seeded with `SEED`). The recommended step count is the one the card's evaluation chose for
that setting (`recommended_steps` in its eval JSON). Run from the checkout's root:

    python docs/make_readme_figure.py            # writes docs/images/zoo.jpg

JPEG at quality 90 without chroma subsampling keeps the figure small (315 KB, where the same sheet as an optimised PNG
is 1.3 MB); the artifacts it adds are far below what the rows show.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from indi_pipeline import InDIPipeline
from indi_pipeline.degradations import (
    bicubic_downsample,
    degradation_generator,
    degrade,
    pil_to_tensor,
    tensor_to_pil,
)
from indi_pipeline.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
TILE = 256
GAP = 4
HEADER = 26
CAPTION = 24
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

# (task, example photo, crop box in it, degradation keyword arguments, eval JSON of the card, caption)
ROWS = [
    ("motion_deblur", "dogs.png", (64, 96, 320, 352), {}, "eval_default.json", "camera shake"),
    ("defocus_deblur", "ladybird.png", (128, 64, 384, 320), {"radius": 3.0}, "eval_default.json", "disk, r = 3 px"),
    ("sr4", "mountains.png", (128, 64, 384, 320), {}, "eval_default.json", "64 px input, bicubic 4x"),
    ("jpeg", "cups.png", (128, 64, 384, 320), {"quality": 10}, "eval_q10.json", "quality 10"),
    ("denoise", "nuthatch.png", (128, 64, 384, 320), {"sigma": 25 / 255}, "eval_sigma25.json", "σ = 25/255"),
]


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:  # no DejaVu: Pillow's built-in font still labels the figure
        return ImageFont.load_default()


def restore_row(task_id: str, photo: str, box, kwargs: dict, eval_name: str):
    """(degraded as shown, 1 step, recommended steps, the recommended count) for one task."""
    task = get_task(task_id)
    repo = ROOT / "model_cards" / task.repo_name
    recommended = json.loads((repo / eval_name).read_text())["recommended_steps"]
    clean = pil_to_tensor(Image.open(ROOT / "examples" / photo).crop(box))
    if task.upscale_factor > 1:
        pipe_input = tensor_to_pil(bicubic_downsample(clean, task.upscale_factor))  # what a user feeds: the LR image
        shown = pipe_input.resize((TILE, TILE), Image.BICUBIC)  # where the walk starts, as the Space shows it
    else:
        pipe_input = shown = tensor_to_pil(degrade(task_id, clean, generator=degradation_generator(SEED), **kwargs))
    strength = task.strength_for_sigma(kwargs["sigma"]) if "sigma" in kwargs else 1.0
    pipe = InDIPipeline.from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    outputs = []
    for steps in (1, recommended):
        generator = torch.Generator().manual_seed(SEED)
        outputs.append(pipe(pipe_input, num_inference_steps=steps, strength=strength, generator=generator).images[0])
    return shown, outputs[0], outputs[1], recommended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images" / "zoo.jpg", help="image to write")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    width = 3 * TILE + 2 * GAP
    height = HEADER + len(ROWS) * (CAPTION + TILE + GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    head, small = font(16), font(14)
    for col, title in enumerate(("degraded input", "1 step (regression)", "recommended steps")):
        draw.text((col * (TILE + GAP) + TILE // 2, HEADER // 2), title, fill="black", font=head, anchor="mm")
    y = HEADER
    for task_id, photo, box, kwargs, eval_name, caption in ROWS:
        shown, one, many, recommended = restore_row(task_id, photo, box, kwargs, eval_name)
        labels = (f"{task_id}: {caption}", "1 step", f"{recommended} steps")
        for col, (tile, label) in enumerate(zip((shown, one, many), labels, strict=True)):
            x = col * (TILE + GAP)
            draw.text((x + 4, y + CAPTION // 2), label, fill="black", font=small, anchor="lm")
            sheet.paste(tile.convert("RGB"), (x, y + CAPTION))
        y += CAPTION + TILE + GAP
        print(f"{task_id}: 1 and {recommended} steps")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=90, subsampling=0, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
