"""Tests for train/prepare_data.py.

All but the last test are offline and need no Debian package: they use tiny
temporary images. The last one runs the full preparation and is skipped unless
the four wallpaper packages are installed.
"""

import importlib.util
import json
import os

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "train", "prepare_data.py")
MANIFEST = os.path.join(ROOT, "train", "photo_manifest.json")

_spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
prepare_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_data)


def _entries(tmp_path, n_train=3, n_val=7, exist=True, size=(64, 48), mode="RGB"):
    photos = []
    for i in range(n_train + n_val):
        path = tmp_path / "src" / f"p{i}.jpg"
        if exist:
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new(mode, size, color=(i * 20) % 256 if mode == "L" else ((i * 20) % 256, 90, 200)).save(path)
        photos.append(
            {
                "name": f"p{i}",
                "split": "train" if i < n_train else "val",
                "path": str(path),
                "package": "fake-wallpapers",
                "license": "CC0-1.0",
            }
        )
    return photos


def _write_manifest(tmp_path, photos):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"photos": photos}))
    return str(path)


# ----------------------------------------------------------------------------- factor choice


@pytest.mark.parametrize(
    "long_side, expected",
    [
        (2560, 2.5),  # 1024 exactly
        (2048, 2.0),  # 1024 exactly
        (3072, 3.0),
        (4096, 4.0),
        (6028, 4.0),  # capped at 4x even though the result stays above the target
        (1280, 2.0),  # never less than 2x, even if that lands well below the target
        (800, 2.0),
    ],
)
def test_choose_factor(long_side, expected):
    assert prepare_data.choose_factor(long_side, 1024) == expected


def test_choose_factor_bounds_and_nearest():
    factors = prepare_data.candidate_factors(2.0, 4.0, 0.5)
    assert factors == [2.0, 2.5, 3.0, 3.5, 4.0]
    for long_side in range(200, 9000, 37):
        for target in (768, 896, 1024):
            f = prepare_data.choose_factor(long_side, target)
            assert 2.0 <= f <= 4.0
            err = abs(long_side / f - target)
            assert all(err <= abs(long_side / g - target) + 1e-9 for g in factors)


def test_integer_only_factors():
    assert prepare_data.candidate_factors(2, 4, 1) == [2, 3, 4]
    assert prepare_data.choose_factor(2560, 1024, step=1) == 3  # 853 is nearer 1024 than 1280


def test_output_size():
    assert prepare_data.output_size(2560, 1600, 2.5) == (1024, 640)
    assert prepare_data.output_size(1365, 1074, 2) == (682, 537)
    assert prepare_data.output_size(3, 3, 4) == (1, 1)


# ----------------------------------------------------------------------------- manifest


def test_repo_manifest_is_valid_and_split_by_photo():
    photos = prepare_data.load_manifest(MANIFEST)
    names = [e["name"] for e in photos]
    paths = [os.path.normpath(e["path"]) for e in photos]
    assert len(names) == len(set(names))
    assert len(paths) == len(set(paths))
    split = prepare_data.split_entries(photos)
    train = {e["name"] for e in split["train"]}
    val = {e["name"] for e in split["val"]}
    assert not train & val
    assert not {e["path"] for e in split["train"]} & {e["path"] for e in split["val"]}
    assert len(val) >= 7
    assert len(train) + len(val) == len(photos)
    # every photo comes from one of the four packages, with a licence recorded
    assert {e["package"] for e in photos} <= set(prepare_data.PACKAGES)
    assert all(e["license"] for e in photos)
    # validation is varied: it draws on more than one package
    assert len({e["package"] for e in split["val"]}) >= 3


def test_manifest_rejects_duplicates_and_bad_splits(tmp_path):
    photos = _entries(tmp_path, exist=False)
    prepare_data.validate_manifest(photos)

    dup_name = [dict(e) for e in photos]
    dup_name[1]["name"] = dup_name[0]["name"]
    with pytest.raises(ValueError, match="duplicate name"):
        prepare_data.validate_manifest(dup_name)

    dup_path = [dict(e) for e in photos]
    dup_path[-1]["path"] = dup_path[0]["path"]  # same photo in train and val
    with pytest.raises(ValueError, match="duplicate source path"):
        prepare_data.validate_manifest(dup_path)

    bad_split = [dict(e) for e in photos]
    bad_split[0]["split"] = "test"
    with pytest.raises(ValueError, match="split must be"):
        prepare_data.validate_manifest(bad_split)

    with pytest.raises(ValueError, match="validation photos"):
        prepare_data.validate_manifest(_entries(tmp_path, n_train=5, n_val=6, exist=False))


def test_missing_source_error_names_file_and_apt_command(tmp_path):
    photos = _entries(tmp_path, exist=True)
    photos[2]["path"] = str(tmp_path / "nope" / "gone.jpg")
    with pytest.raises(FileNotFoundError) as info:
        prepare_data.check_sources(photos)
    msg = str(info.value)
    assert str(tmp_path / "nope" / "gone.jpg") in msg
    assert "apt-get install -y fake-wallpapers" in msg
    assert "p0.jpg" not in msg  # present files are not reported

    # main() surfaces the same error before writing anything
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="apt-get install"):
        prepare_data.main(["--output_dir", str(out), "--manifest", _write_manifest(tmp_path, photos)])
    assert not out.exists()


# ----------------------------------------------------------------------------- end to end on tiny images


def test_main_on_tiny_images(tmp_path):
    photos = _entries(tmp_path, n_train=3, n_val=7, size=(80, 40))
    photos[0]["path"] = str(tmp_path / "src" / "grey.png")
    Image.new("L", (90, 60), 128).save(photos[0]["path"])
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "stale.png").write_bytes(b"old")

    rc = prepare_data.main(
        ["--output_dir", str(out), "--manifest", _write_manifest(tmp_path, photos), "--target_long_side", "16"]
    )
    assert rc == 0
    train = sorted(os.listdir(out / "train"))
    val = sorted(os.listdir(out / "val"))
    assert train == ["p0.png", "p1.png", "p2.png"]  # stale file removed
    assert val == [f"p{i}.png" for i in range(3, 10)]
    with Image.open(out / "train" / "p0.png") as im:
        assert im.mode == "RGB" and im.size == (22, 15)  # 90x60 / 4 (capped)
    with Image.open(out / "val" / "p5.png") as im:
        assert im.mode == "RGB" and im.size == (20, 10)  # 80x40 / 4 (capped)
    index = json.loads((out / "index.json").read_text())
    assert {r["name"] for r in index["photos"]} == {e["name"] for e in photos}


def test_main_fails_over_size_budget(tmp_path):
    photos = _entries(tmp_path)
    rc = prepare_data.main(
        ["--output_dir", str(tmp_path / "out"), "--manifest", _write_manifest(tmp_path, photos), "--max_total_mib", "0"]
    )
    assert rc == 1


# ----------------------------------------------------------------------------- the real photos


def test_full_preparation_of_debian_photos(tmp_path):
    photos = prepare_data.load_manifest(MANIFEST)
    if prepare_data.missing_sources(photos):
        pytest.skip("wallpaper packages not installed: apt-get install -y " + " ".join(prepare_data.PACKAGES))
    out = tmp_path / "photos"
    assert prepare_data.main(["--output_dir", str(out)]) == 0
    split = prepare_data.split_entries(photos)
    total = 0
    for s in prepare_data.SPLITS:
        files = sorted(os.listdir(out / s))
        assert files == sorted(e["name"] + ".png" for e in split[s])
        for f in files:
            with Image.open(out / s / f) as im:
                assert im.mode == "RGB" and im.format == "PNG"
                assert 500 <= max(im.size) <= 1600
            total += os.path.getsize(out / s / f)
    assert total < 45 * 2**20
