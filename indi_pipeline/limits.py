"""Size limits shared by the library and the CLI (torch-free, so that `indi --help` stays instant)."""

# open_image_file's default limit, in pixels of the restored image. A CPU restore peaks at about 90 bytes per pixel (the
# network is tiled, the walk is whole-image): `indi restore` of an 8000x8000 PNG (64 MP) peaked at 5.9 GB, so 50 MP
# needs about 4.5 GB. The limit is a parameter (`indi restore --max-megapixels`).
DEFAULT_MAX_PIXELS = 50_000_000


def region_box(
    width: int, height: int, max_pixels: int, centre: tuple[float, float] = (0.5, 0.5), scale: int = 1
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest region of a width x height photo, with its aspect ratio, that
    restores to at most ``max_pixels`` (``scale`` times larger on each side), placed as near ``centre`` (fractions
    of the photo's width and height) as the photo allows; the whole photo when it fits."""
    if width * height * scale * scale <= max_pixels:
        return 0, 0, width, height
    shrink = (max_pixels / (width * height * scale * scale)) ** 0.5
    w, h = max(1, int(width * shrink)), max(1, int(height * shrink))
    x, y = (min(1.0, max(0.0, float(c))) for c in centre)
    left = min(width - w, max(0, round(x * width - w / 2)))
    top = min(height - h, max(0, round(y * height - h / 2)))
    return left, top, left + w, top + h
