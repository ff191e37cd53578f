"""Size limits shared by the library and the CLI (torch-free, so that `indi --help` stays instant)."""

# open_image_file's default limit, in pixels of the restored image. A CPU restore peaks at about 90 bytes per pixel (the
# network is tiled, the walk is whole-image): `indi restore` of an 8000x8000 PNG (64 MP) peaked at 5.9 GB, so 50 MP
# needs about 4.5 GB. The limit is a parameter (`indi restore --max-megapixels`).
DEFAULT_MAX_PIXELS = 50_000_000
