"""Conversion between user images (PIL, numpy, torch; RGB, grayscale, alpha) and the pipeline's RGB tensors.

The network sees RGB in [0, 1]. Grayscale is restored as gray RGB and averaged back; an alpha channel is set aside
untouched (only resized with the image for super-resolution) and put back on the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

# Modes PIL can hold that we convert to a float image; anything else is refused by name.
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass
class ImageBatch:
    """RGB pixels (N, 3, H, W) in [0, 1] plus what is needed to give the user back the same kind of image."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None  # (N, 1, H, W) or None
    grayscale: bool


def _check_finite_and_range(array: torch.Tensor, what: str) -> None:
    if array.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(array.shape)})")
    if not torch.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or Inf values")


def _pil_to_array(image: PIL.Image.Image) -> np.ndarray:
    """A PIL image as float32 H x W x C in [0, 1], C in {1, 2, 3, 4}, upright per its EXIF orientation."""
    image = PIL.ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode in ("RGBa", "La"):
        image = image.convert(mode.upper())
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if array.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        return np.clip(array / peak, 0.0, 1.0)[..., None]
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[..., None]
    if mode == "1":
        image = image.convert("L")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"unsupported PIL image mode {image.mode!r}")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def _numpy_to_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise ValueError(f"unsupported numpy dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")


def _split_channels(pixels: torch.Tensor, source: str) -> ImageBatch:
    """pixels: (N, C, H, W) float; C in 1..4 -> RGB + optional alpha."""
    channels = pixels.shape[1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(
            f"{source} has {channels} channels; expected 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)"
        )
    _check_finite_and_range(pixels, source)
    grayscale = channels in (1, 2)
    color = pixels[:, :1].expand(-1, 3, -1, -1) if grayscale else pixels[:, :3]
    alpha = pixels[:, channels - 1 :] if channels in (2, 4) else None
    return ImageBatch(rgb=color.contiguous(), alpha=alpha, grayscale=grayscale)


def to_image_batches(image, name: str = "image") -> list[ImageBatch]:
    """Converts any accepted input into a list of same-size batches (one per distinct input image size).

    Accepted: a PIL image or a list of them; numpy H x W, H x W x C or N x H x W x C (uint8, uint16 or float in
    [0, 1]); torch C x H x W or N x C x H x W floats in [0, 1]; or a list of numpy arrays / tensors.
    """
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise ValueError(f"{name} is an empty list")
        items = [to_image_batches(item, f"{name}[{i}]") for i, item in enumerate(image)]
        return [batch for group in items for batch in group]
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{name} is empty ({image.width}x{image.height})")
        array = _pil_to_array(image)
        return [_split_channels(torch.from_numpy(array).permute(2, 0, 1)[None], f"{name} (PIL {image.mode})")]
    if isinstance(image, np.ndarray):
        array = _numpy_to_float(image)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"{name} must be H x W, H x W x C or N x H x W x C; got shape {image.shape}")
        return [_split_channels(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2), name)]
    if isinstance(image, torch.Tensor):
        if not torch.is_floating_point(image):
            raise ValueError(f"{name} is a {image.dtype} tensor; pass a float tensor in [0, 1]")
        tensor = image.detach().float()
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4:
            raise ValueError(f"{name} must be C x H x W or N x C x H x W; got shape {tuple(image.shape)}")
        return [_split_channels(tensor, name)]
    raise TypeError(f"{name} must be a PIL image, numpy array, torch tensor or a list of them; got {type(image)}")


def merge(batch_rgb: torch.Tensor, alpha: torch.Tensor | None, grayscale: bool) -> torch.Tensor:
    """Restored RGB (N, 3, H, W) back to the input's channel layout: gray if it was gray, alpha re-attached."""
    pixels = batch_rgb.mean(dim=1, keepdim=True) if grayscale else batch_rgb
    if alpha is not None:
        pixels = torch.cat([pixels, alpha.to(pixels)], dim=1)
    return pixels


def tensor_to_output(pixels: torch.Tensor, output_type: str):
    """(N, C, H, W) in [0, 1] -> "pt" (as is), "np" (N, H, W, C float32) or "pil" (list of PIL images)."""
    pixels = pixels.clamp(0.0, 1.0)
    if output_type == "pt":
        return pixels
    array = pixels.permute(0, 2, 3, 1).float().cpu().numpy()
    if output_type == "np":
        return array
    images = []
    for item in array:
        item = (item * 255.0).round().astype(np.uint8)
        # PIL infers L / LA / RGB / RGBA from the shape.
        images.append(PIL.Image.fromarray(item[..., 0] if item.shape[-1] == 1 else item))
    return images
