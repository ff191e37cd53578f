"""Restored photos keep what the photographer's file had: the ICC profile byte for byte, EXIF with the orientation
reset and the pixel dimensions updated, 16 bits where the PNG had them; PNG, JPEG or WebP (indi_pipeline.photo_files
and `indi restore --format/--quality`, in-process on a tiny repo)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageOps
import png
import pytest
from conftest import save_tiny_repo
from PIL import ImageCms

from indi_pipeline.cli import main
from indi_pipeline.image_io import open_image_file
from indi_pipeline.photo_files import (
    _UPRIGHT,
    PhotoMetadata,
    encode_photo,
    png_bit_depth,
    read_16bit_png,
    save_photo,
)

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif(orientation: int = 6, width: int = 64, height: int = 40) -> bytes:
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera maker"
    sub = exif.get_ifd(0x8769)
    sub[0xA002], sub[0xA003] = width, height
    return exif.tobytes()


def camera_jpeg(path, orientation: int = 6):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(path, "JPEG", quality=92, icc_profile=ICC, exif=camera_exif(orientation))
    return path


def write_16bit_png(path, pixels: np.ndarray):
    height, width, channels = pixels.shape
    writer = png.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4), bitdepth=16)
    with open(path, "wb") as file:
        writer.write(file, pixels.reshape(height, width * channels))
    return path


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_profile_and_exif_survive_with_upright_orientation_and_new_size(tmp_path, fmt):
    image = open_image_file(camera_jpeg(tmp_path / "in.jpg"))
    assert image.size == (40, 64)  # turned upright on reading
    save_photo(image.resize((160, 256)), tmp_path / f"out.{fmt}", PhotoMetadata.of(image), fmt)
    with PIL.Image.open(tmp_path / f"out.{fmt}") as out:
        exif = out.getexif()
        assert out.format == fmt.upper() and out.size == (160, 256)
        assert out.info["icc_profile"] == ICC  # byte for byte
        assert exif[0x0112] == 1 and exif[0x010F] == "Camera maker"
        assert (exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003]) == (160, 256)


def test_sixteen_bit_pngs_round_trip_exactly_with_their_metadata(tmp_path):
    samples = np.random.default_rng(1).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    write_16bit_png(tmp_path / "in.png", samples)
    assert png_bit_depth(tmp_path / "in.png") == 16 and png_bit_depth(camera_jpeg(tmp_path / "x.jpg")) is None
    pixels = read_16bit_png(tmp_path / "in.png")
    np.testing.assert_array_equal(pixels, samples)
    metadata = PhotoMetadata(ICC, camera_exif(), bit_depth=16)
    save_photo(pixels / 65535.0, tmp_path / "out.png", metadata)
    np.testing.assert_array_equal(read_16bit_png(tmp_path / "out.png"), samples)
    with PIL.Image.open(tmp_path / "out.png") as out:  # the chunks pypng cannot write are there and valid
        assert out.info["icc_profile"] == ICC and out.getexif()[0x0112] == 1
    gray = np.random.default_rng(2).integers(0, 65536, (9, 7, 1), dtype=np.uint16)
    write_16bit_png(tmp_path / "gray.png", gray)
    np.testing.assert_array_equal(read_16bit_png(tmp_path / "gray.png"), gray)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_reading_turns_pixels_upright_as_pillow_does(orientation):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = PIL.Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(PIL.ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(_UPRIGHT.get(orientation, lambda a: a)(pixels), expected)


def test_bad_output_requests_get_clear_errors():
    pixels = np.zeros((8, 8, 4))
    with pytest.raises(ValueError, match="no transparency"):
        encode_photo(pixels, format="jpeg")
    with pytest.raises(ValueError, match="jpeg and webp output only"):
        encode_photo(pixels, format="png", quality=80)
    with pytest.raises(ValueError, match="one of png, jpeg, webp"):
        encode_photo(pixels, format="gif")
    with pytest.raises(ValueError, match="1-100"):
        encode_photo(pixels[..., :3], format="webp", quality=0)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    return save_tiny_repo(tmp_path_factory.mktemp("repo") / "indi-tiny")


def restore(tiny_repo, tmp_path, *inputs, extra=()):
    return main(["restore", *map(str, inputs), "--task", "denoise", "--model", str(tiny_repo), "--steps", "1",
                 "--strength", "0.5", "--output-dir", str(tmp_path / "out"), *extra])  # fmt: skip


def test_cli_keeps_profile_exif_and_16_bits(tiny_repo, tmp_path):
    photo = camera_jpeg(tmp_path / "cam.jpg")
    samples = np.random.default_rng(3).integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    deep = write_16bit_png(tmp_path / "deep.png", samples)
    assert restore(tiny_repo, tmp_path, photo, deep) == 0
    with PIL.Image.open(tmp_path / "out" / "cam_denoise_1steps.png") as out:
        assert out.info["icc_profile"] == ICC and out.getexif()[0x0112] == 1 and out.size == (40, 64)
    assert png_bit_depth(tmp_path / "out" / "deep_denoise_1steps.png") == 16
    restored = read_16bit_png(tmp_path / "out" / "deep_denoise_1steps.png")
    assert restored.shape == samples.shape and len(np.unique(restored)) > 256  # more levels than 8 bits hold

    assert restore(tiny_repo, tmp_path, photo, extra=["--format", "jpeg", "--quality", "80"]) == 0
    with PIL.Image.open(tmp_path / "out" / "cam_denoise_1steps.jpg") as out:
        assert out.format == "JPEG" and out.info["icc_profile"] == ICC


def test_cli_refuses_quality_for_png(tiny_repo, tmp_path):
    with pytest.raises(SystemExit, match="--quality is for --format jpeg or webp only"):
        restore(tiny_repo, tmp_path, camera_jpeg(tmp_path / "cam.jpg"), extra=["--quality", "80"])
