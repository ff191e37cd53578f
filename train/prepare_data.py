#!/usr/bin/env python
"""Build the clean-photo training/validation set from Debian wallpaper packages.

The photos listed in ``train/photo_manifest.json`` are free-licensed camera
photographs shipped by four Debian packages. They are JPEGs, so each one is
downscaled by an integer-ish factor in [2, 4] with PIL LANCZOS (which averages
the 8x8 JPEG block artifacts away) and written as a lossless RGB PNG. The
train/val split is fixed per photo in the manifest; validation photos are never
written to the train folder.

    apt-get install -y plasma-workspace-wallpapers mate-backgrounds \
        lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
    python -m train.prepare_data --output_dir data/photos

See train/DATA.md for the photo list, licences and the size budget.

The second source, ``--shared_photos DIR`` (the project's ``../shared/photos``: 406 varied free-licensed photos,
already downscaled, with a manifest of sources and licences), is copied as it is into ``train/`` and ``val/`` by the
fixed split of ``train/shared_photos_split.json``, each file checked against the manifest's sha256:

    python -m train.prepare_data --shared_photos ../shared/photos --output_dir data/shared_photos
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MANIFEST = os.path.join(HERE, "photo_manifest.json")
SHARED_SPLIT = os.path.join(HERE, "shared_photos_split.json")
SPLITS = ("train", "val")
PACKAGES = (
    "plasma-workspace-wallpapers",
    "mate-backgrounds",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Downscale the Debian wallpaper photos into a clean PNG dataset.")
    parser.add_argument(
        "--output_dir",
        type=str,
        default="data/photos",
        help="Folder that receives train/ and val/ sub-folders of PNG files (data/ is gitignored).",
    )
    parser.add_argument(
        "--shared_photos",
        type=str,
        default=None,
        metavar="DIR",
        help="Instead of the Debian photos: copy the photos of DIR (with its manifest.json) into train/ and val/ by "
        "the fixed split of train/shared_photos_split.json.",
    )
    parser.add_argument(
        "--manifest",
        type=str,
        default=DEFAULT_MANIFEST,
        help="JSON manifest of the photos (name, split, path, package, license, author).",
    )
    parser.add_argument(
        "--target_long_side",
        type=int,
        default=1024,
        help="The downscale factor is chosen per photo so the output's long side lands near this many pixels.",
    )
    parser.add_argument(
        "--min_factor",
        type=float,
        default=2.0,
        help="Smallest downscale factor (never less than 2x, so JPEG artifacts are averaged away).",
    )
    parser.add_argument(
        "--max_factor",
        type=float,
        default=4.0,
        help="Largest downscale factor.",
    )
    parser.add_argument(
        "--factor_step",
        type=float,
        default=0.5,
        help="Factors are picked from min_factor, min_factor+step, ..., max_factor (0.5 gives 2, 2.5, 3, 3.5, 4).",
    )
    parser.add_argument(
        "--min_val_photos",
        type=int,
        default=7,
        help="Refuse a manifest with fewer validation photos than this.",
    )
    parser.add_argument(
        "--max_total_mib",
        type=float,
        default=45.0,
        help="Fail (exit 1) if train+val together exceed this many MiB; lower --target_long_side then.",
    )
    parser.add_argument(
        "--png_compress_level",
        type=int,
        default=9,
        help="zlib level for the lossless PNG files (0-9; 9 is smallest).",
    )
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- pure logic


def candidate_factors(min_factor=2.0, max_factor=4.0, step=0.5):
    """The allowed downscale factors, smallest first."""
    if min_factor < 1 or max_factor < min_factor or step <= 0:
        raise ValueError(f"bad factor range: min={min_factor} max={max_factor} step={step}")
    n = int(math.floor((max_factor - min_factor) / step + 1e-9))
    return [round(min_factor + i * step, 6) for i in range(n + 1)]


def choose_factor(long_side, target_long_side=1024, min_factor=2.0, max_factor=4.0, step=0.5):
    """Pick the factor whose output long side is closest to ``target_long_side``.

    The result is always in [min_factor, max_factor]; ties go to the larger factor
    (smaller, cleaner image).
    """
    if long_side <= 0 or target_long_side <= 0:
        raise ValueError("sizes must be positive")
    best = None
    for f in candidate_factors(min_factor, max_factor, step):
        err = abs(long_side / f - target_long_side)
        if best is None or err <= best[0] + 1e-9:
            best = (err, f)
    return best[1]


def output_size(width, height, factor):
    """Size of a ``width`` x ``height`` image downscaled by ``factor`` (at least 1x1)."""
    return max(1, int(round(width / factor))), max(1, int(round(height / factor)))


def load_manifest(path, min_val_photos=7):
    """Read and validate the manifest; returns the list of photo entries."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    photos = doc["photos"] if isinstance(doc, dict) else doc
    validate_manifest(photos, min_val_photos=min_val_photos)
    return photos


def validate_manifest(photos, min_val_photos=7):
    """Unique names and paths, known splits, enough validation photos."""
    required = ("name", "split", "path", "package", "license")
    names, paths = set(), set()
    for i, e in enumerate(photos):
        missing = [k for k in required if not e.get(k)]
        if missing:
            raise ValueError(f"manifest entry {i} lacks {missing}: {e}")
        if e["split"] not in SPLITS:
            raise ValueError(f"manifest entry {e['name']!r}: split must be one of {SPLITS}, got {e['split']!r}")
        if e["name"] in names:
            raise ValueError(f"duplicate name in manifest: {e['name']!r}")
        real = os.path.normpath(e["path"])
        if real in paths:
            raise ValueError(f"duplicate source path in manifest: {e['path']}")
        names.add(e["name"])
        paths.add(real)
    n_val = sum(e["split"] == "val" for e in photos)
    if n_val < min_val_photos:
        raise ValueError(f"manifest has {n_val} validation photos, need at least {min_val_photos}")
    if n_val == len(photos):
        raise ValueError("manifest has no training photos")


def split_entries(photos):
    """{'train': [...], 'val': [...]} by the manifest's fixed per-photo split."""
    return {s: [e for e in photos if e["split"] == s] for s in SPLITS}


def missing_sources(photos):
    return [e for e in photos if not os.path.isfile(e["path"])]


def check_sources(photos):
    """Raise FileNotFoundError naming every missing file and the apt-get command that installs it."""
    missing = missing_sources(photos)
    if not missing:
        return
    pkgs = sorted({e["package"] for e in missing})
    lines = [f"  {e['path']}  (Debian package {e['package']})" for e in missing]
    raise FileNotFoundError(
        f"{len(missing)} source photo(s) not found:\n"
        + "\n".join(lines)
        + "\nInstall them with:\n  apt-get install -y "
        + " ".join(pkgs)
        + "\n(or all four: apt-get install -y "
        + " ".join(PACKAGES)
        + ")"
    )


def prepare_photo(src, dst, target_long_side=1024, min_factor=2.0, max_factor=4.0, step=0.5, compress_level=9):
    """Downscale one photo with LANCZOS and write it as an RGB PNG; returns a record of what was done."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        factor = choose_factor(max(w, h), target_long_side, min_factor, max_factor, step)
        size = output_size(w, h, factor)
        # LANCZOS on the original mode first (L stays L), then RGB: the model always sees 3 channels.
        out = im.resize(size, Image.LANCZOS)
        if out.mode != "RGB":
            out = out.convert("RGB")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    out.save(dst, format="PNG", compress_level=compress_level)
    return {
        "original_size": [w, h],
        "factor": factor,
        "output_size": list(size),
        "pixels": size[0] * size[1],
        "bytes": os.path.getsize(dst),
    }


# ----------------------------------------------------------------------------- driver


def clear_split_dirs(output_dir):
    """Remove PNG files this script wrote earlier, so a changed manifest leaves no stale photos."""
    for s in SPLITS:
        d = os.path.join(output_dir, s)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.endswith(".png"):
                    os.remove(os.path.join(d, f))


def prepare_shared_photos(source_dir: str, output_dir: str, split_path: str = SHARED_SPLIT) -> dict:
    """Copies the shared photos into output_dir/{train,val} by the fixed split; returns {split: count}.

    Every file named by the split must be in the manifest with a matching sha256: a changed or missing photo stops
    the run (the split, and so every evaluation on it, would silently change otherwise)."""
    with open(split_path, encoding="utf-8") as handle:
        split = json.load(handle)
    with open(os.path.join(source_dir, "manifest.json"), encoding="utf-8") as handle:
        manifest = {entry["file"]: entry for entry in json.load(handle)}
    overlap = set(split["train"]) & set(split["val"])
    if overlap:
        raise SystemExit(f"error: {split_path}: photos in both splits: {sorted(overlap)[:5]}")
    counts = {}
    for name in SPLITS:
        folder = os.path.join(output_dir, name)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        for file in split[name]:
            entry, path = manifest.get(file), os.path.join(source_dir, file)
            if entry is None or not os.path.isfile(path):
                raise SystemExit(f"error: {file} (split {name}) is not in {source_dir} and its manifest")
            with open(path, "rb") as handle:
                data = handle.read()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise SystemExit(f"error: {path} does not match its manifest sha256")
            with open(os.path.join(folder, file), "wb") as handle:
                handle.write(data)
        counts[name] = len(split[name])
    return counts


def main(argv=None):
    args = parse_args(argv)
    if args.shared_photos:
        counts = prepare_shared_photos(args.shared_photos, args.output_dir)
        print(f"copied {counts['train']} train and {counts['val']} val photos into {args.output_dir}")
        return 0
    photos = load_manifest(args.manifest, min_val_photos=args.min_val_photos)
    check_sources(photos)

    clear_split_dirs(args.output_dir)
    t0 = time.time()
    records = []
    for s, entries in split_entries(photos).items():
        for e in entries:
            dst = os.path.join(args.output_dir, s, e["name"] + ".png")
            rec = prepare_photo(
                e["path"],
                dst,
                target_long_side=args.target_long_side,
                min_factor=args.min_factor,
                max_factor=args.max_factor,
                step=args.factor_step,
                compress_level=args.png_compress_level,
            )
            rec.update(name=e["name"], split=s, file=os.path.relpath(dst, args.output_dir), source=e["path"])
            rec.update(package=e["package"], license=e["license"], author=e.get("author", ""))
            records.append(rec)
            print(
                f"{s:5s} {e['name']:28s} {rec['original_size'][0]:5d}x{rec['original_size'][1]:<5d} "
                f"/{rec['factor']:<3g} -> {rec['output_size'][0]:4d}x{rec['output_size'][1]:<4d} "
                f"{rec['bytes'] / 2**20:6.2f} MiB"
            )

    with open(os.path.join(args.output_dir, "index.json"), "w", encoding="utf-8") as f:
        json.dump({"target_long_side": args.target_long_side, "photos": records}, f, indent=1, ensure_ascii=False)

    print()
    print(f"{'split':6s} {'photos':>6s} {'Mpixels':>8s} {'MiB':>8s}")
    total_bytes = 0
    for s in SPLITS:
        rs = [r for r in records if r["split"] == s]
        nbytes = sum(r["bytes"] for r in rs)
        total_bytes += nbytes
        print(f"{s:6s} {len(rs):6d} {sum(r['pixels'] for r in rs) / 1e6:8.2f} {nbytes / 2**20:8.2f}")
    total_mib = total_bytes / 2**20
    print(
        f"{'total':6s} {len(records):6d} {sum(r['pixels'] for r in records) / 1e6:8.2f} {total_mib:8.2f}"
        f"   (target long side {args.target_long_side}, {time.time() - t0:.0f}s, in {args.output_dir})"
    )
    if total_mib > args.max_total_mib:
        print(
            f"ERROR: {total_mib:.2f} MiB exceeds --max_total_mib {args.max_total_mib}; "
            f"rerun with a lower --target_long_side.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
