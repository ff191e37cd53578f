"""The five InDI task degradations (design.md section 4), batched, seeded and device-agnostic.

Every task function maps a clean batch ``x`` (float tensor ``(N, C, H, W)`` with values in ``[0, 1]``,
on any device) to a degraded batch ``y`` of the **same shape, dtype and device**:

==================  =====================================================================================
task id             degradation
==================  =====================================================================================
``denoise``         ``y = x + sigma * n``, ``n ~ N(0, I)``, ``sigma`` per image in ``[0, 50/255]``, no clipping
``sr4``             ``LR = bicubic 4x downscale`` (antialiased, matches ``PIL.Image.resize(BICUBIC)``),
                    ``y = bicubic upscale of LR`` back to ``x``'s size
``jpeg``            PIL JPEG encode/decode at quality ``q`` per image in ``[10, 50]`` (PIL defaults otherwise)
``motion_deblur``   ``y = x * k + n``, ``k`` a random camera-shake kernel (random-walk trajectory, extent
                    5-25 px, normalised), ``n`` Gaussian with ``sigma`` per image in ``[0, 2/255]``
``defocus_deblur``  ``y = x * disk(r) + n``, antialiased disk of radius ``r`` per image in ``[1, 6]`` px,
                    ``n`` Gaussian with ``sigma`` per image in ``[0, 2/255]``
==================  =====================================================================================

Randomness comes only from ``generator``.  Random *parameters* (sigmas, radii, qualities, kernels) are drawn
on the generator's device and kernels are rasterised on the CPU in float64, then moved to ``x.device``; noise
tensors are drawn on the generator's device and moved.  So with a CPU generator the same seed gives the same
result on CPU and GPU (up to float rounding of the convolution), and the same seed always gives identical
output.  With ``generator=None`` torch's global RNG is used.  For training on a GPU pass a generator on
``x.device`` so the noise tensors are drawn there (a CPU generator makes them on the CPU, then copies them).

Everything except JPEG runs on ``x.device`` without Python loops over pixels; blurring with per-image kernels
is one grouped ``conv2d`` (``groups = N * C``) with reflect padding.  JPEG goes through PIL per image (CPU) and
the result is returned on ``x.device``.

Channels: noise, blur and bicubic resizing accept any channel count ``C``; JPEG needs ``C`` in ``{1, 3}``
(grey or RGB).  Values are not range-checked (noisy inputs may leave ``[0, 1]``), but NaN/Inf are rejected
unless a task function is given ``check_finite=False``: the check reads a value back from ``x``'s device, which
stalls a GPU's queue every batch, so the trainer turns it off for its batches (crops of 8-bit photos, always
finite).

Registry: ``DEGRADATIONS[task](x, generator=None, **kwargs)`` and ``degrade(task, x, generator, **kwargs)``.
For PIL images (CLI ``indi degrade`` and the demo) use ``degrade_pil``.

Seeds: do not degrade and restore with generators seeded alike.  A pipeline seeded with
``torch.Generator().manual_seed(s)`` draws its start noise first; ``add_gaussian_noise`` with a given sigma draws
its noise first too, so the two would be *the same* noise and the network would see sigma + eps of one noise
instead of two independent ones (on the held-out photos that cost the denoiser 0.1-0.4 dB at sigma 50).
``degradation_generator(seed)`` gives the degradations' stream for a seed; ``degrade_pil``, the evaluation and
the demo use it, and restore with ``torch.Generator().manual_seed(seed)``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "TASK_IDS",
    "DEGRADATIONS",
    "degrade",
    "pipeline_input",
    "degrade_pil",
    "degradation_generator",
    "add_gaussian_noise",
    "bicubic_downsample",
    "bicubic_upsample",
    "sr_downsample",
    "crop_to_multiple",
    "degrade_sr4",
    "jpeg_compress",
    "motion_kernels",
    "motion_blur",
    "disk_kernels",
    "defocus_blur",
    "blur",
    "pil_to_tensor",
    "tensor_to_pil",
]

SR_SCALE = 4
DENOISE_SIGMA_MAX = 50.0 / 255.0
JPEG_QUALITY_RANGE = (10, 50)
MOTION_LENGTH_RANGE = (5.0, 25.0)
DEFOCUS_RADIUS_RANGE = (1.0, 6.0)
BLUR_NOISE_MAX = 2.0 / 255.0

Number = int | float
ParamLike = Number | Sequence[Number] | torch.Tensor | None


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------
def _check_image(x, name: str = "x", channels: Sequence[int] | None = None, check_finite: bool = True) -> torch.Tensor:
    """Validate an image batch: a floating tensor (N, C, H, W) with N, H, W >= 1, finite values (``check_finite``)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor (N, C, H, W), got a {x.ndim}-D tensor of shape {tuple(x.shape)}"
            + ("; add a batch dimension with x[None]" if x.ndim == 3 else "")
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    n, c, h, w = x.shape
    if n < 1 or c < 1 or h < 1 or w < 1:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    if channels is not None and c not in channels:
        want = " or ".join(map(str, channels))
        raise ValueError(f"{name} must have {want} channels, got {c} (shape {tuple(x.shape)})")
    # one float64 reduction (no bool copy of x): NaN/Inf propagate into the sum
    if check_finite and not bool(torch.isfinite(x.sum(dtype=torch.float64))):
        bad = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise ValueError(f"{name} contains {bad} values")
    return x


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n uniform [0, 1) numbers in float64 on the CPU, drawn with ``generator`` (on its own device)."""
    return torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64).cpu()


def _per_image(value: ParamLike, n: int, name: str, *, low: float = 0.0) -> torch.Tensor:
    """Broadcast a scalar / sequence / tensor parameter to a float64 CPU tensor of shape (n,)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"{name} must be a scalar or have one value per image ({n}), got {t.numel()} values")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    if bool((t < low).any()):
        raise ValueError(f"{name} must be >= {low}, got {t.tolist()}")
    return t


def _check_range(rng: Sequence[Number], name: str, low: float = 0.0) -> tuple[float, float]:
    if len(rng) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {rng!r}")
    lo, hi = float(rng[0]), float(rng[1])
    if not (low <= lo <= hi):
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got {rng!r}")
    return lo, hi


def _uniform(n: int, rng: tuple[float, float], generator) -> torch.Tensor:
    lo, hi = rng
    return lo + (hi - lo) * _rand(n, generator)


def _noise_sigmas(
    sigma: ParamLike, sigma_name: str, maximum: float, maximum_name: str, n: int, generator
) -> torch.Tensor:
    """Per-image noise std (n,) float64 CPU: the given value(s), or uniform in [0, maximum] when ``sigma`` is None."""
    if sigma is not None:
        return _per_image(sigma, n, sigma_name)
    if not (math.isfinite(maximum) and maximum >= 0):
        raise ValueError(f"{maximum_name} must be a finite number >= 0, got {maximum}")
    return maximum * _rand(n, generator)


def _noise_like(x: torch.Tensor, sigma: torch.Tensor, generator) -> torch.Tensor:
    """sigma (n,) float64 CPU -> per-image Gaussian noise shaped like x, on x.device."""
    noise = torch.randn(x.shape, generator=generator, device=_gen_device(generator), dtype=torch.float32)
    noise = noise.to(device=x.device, dtype=x.dtype)
    if bool((sigma == sigma[0]).all()):  # one sigma for the batch (sigma is on the CPU: no device read)
        # a 0-d CPU tensor reaches a GPU kernel as a scalar argument (no copy); on the 2-core CPU it multiplied 3x
        # faster than a Python float (5 vs 15 ms for 64 x 3 x 192 x 192)
        return noise * sigma[0].to(x.dtype)
    # non_blocking: a blocking copy to a GPU waits for its whole queue; the stream still orders the copy first
    return noise * sigma.to(device=x.device, dtype=x.dtype, non_blocking=True).view(-1, 1, 1, 1)


# --------------------------------------------------------------------------------------------------------------
# denoise
# --------------------------------------------------------------------------------------------------------------
def add_gaussian_noise(
    x: torch.Tensor,
    sigma: ParamLike = None,
    sigma_max: float = DENOISE_SIGMA_MAX,
    generator: torch.Generator | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """``y = x + sigma * n`` with ``n ~ N(0, I)``; **no clipping** (y may leave [0, 1]).

    Args:
        x: (N, C, H, W) float tensor, any C, any device.
        sigma: noise std on the [0, 1] scale: a float, or one value per image (sequence / tensor of length N).
            ``None`` draws one sigma per image uniformly in ``[0, sigma_max]``.
        sigma_max: upper bound of the random sigma (default 50/255).
        generator: torch.Generator for the sigmas and the noise.
        check_finite: reject NaN/Inf in ``x`` (default; see the module docstring).
    """
    _check_image(x, check_finite=check_finite)
    sig = _noise_sigmas(sigma, "sigma", sigma_max, "sigma_max", x.shape[0], generator)
    return x + _noise_like(x, sig, generator)


# --------------------------------------------------------------------------------------------------------------
# sr4
# --------------------------------------------------------------------------------------------------------------
def crop_to_multiple(x: torch.Tensor, m: int = SR_SCALE) -> torch.Tensor:
    """Crop the bottom/right of ``x`` (..., H, W) so that H and W are multiples of ``m`` (top-left stays put)."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor with at least 2 dimensions (..., H, W), got {got}")
    if int(m) != m or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    m = int(m)
    h, w = x.shape[-2:]
    if h < m or w < m:
        raise ValueError(f"image of size {h}x{w} (HxW) is smaller than {m} px; cannot crop to a multiple of {m}")
    return x[..., : h - h % m, : w - w % m]


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PIL-style bicubic resize (torch's antialiased path); half/bfloat16 go through float32 (not every
    backend implements the antialiased kernel for them)."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return F.interpolate(xf, size=size, mode="bicubic", align_corners=False, antialias=True).to(x.dtype)


def bicubic_downsample(
    x: torch.Tensor, scale: int = SR_SCALE, clamp: bool = True, check_finite: bool = True
) -> torch.Tensor:
    """Antialiased bicubic downscale by an integer ``scale``, matching ``PIL.Image.resize(..., BICUBIC)``.

    Uses ``F.interpolate(mode="bicubic", antialias=True)`` (PIL's filter: a = -0.5, support scaled by
    ``scale``).  In float it agrees with PIL's float ('F') mode to ~1e-6; against PIL on uint8 RGB images the
    difference is a few uint8 levels at most (PIL rounds to uint8 between its horizontal and vertical passes).
    ``clamp`` clips to [0, 1] like PIL's 8-bit output.  H and W must be divisible by ``scale``
    (ValueError otherwise; see :func:`crop_to_multiple`). ``check_finite``: as for the task functions.
    """
    y = _bicubic(x, _low_resolution_size(x, scale, check_finite))
    return y.clamp_(0.0, 1.0) if clamp else y


def _low_resolution_size(x: torch.Tensor, scale, check_finite: bool = True) -> tuple[int, int]:
    """(H // scale, W // scale) of an image whose sides ``scale`` divides (ValueError otherwise)."""
    _check_image(x, check_finite=check_finite)
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(
            f"image size {h}x{w} (HxW) is not divisible by the scale {scale}; "
            f"crop it first, e.g. crop_to_multiple(x, {scale}) -> {h - h % scale}x{w - w % scale}"
        )
    return h // scale, w // scale


def bicubic_upsample(
    x: torch.Tensor,
    scale: int | None = SR_SCALE,
    size: tuple[int, int] | None = None,
    clamp: bool = True,
    check_finite: bool = True,
) -> torch.Tensor:
    """Bicubic upscale to ``size`` (H, W) or by ``scale``, matching ``PIL.Image.resize(..., BICUBIC)``.

    Uses torch's antialiased bicubic path, which for upscaling is PIL's cubic (a = -0.5); the plain
    ``mode="bicubic"`` path uses a = -0.75 and does *not* match PIL.  ``size`` wins over ``scale``.
    ``check_finite``: as for the task functions.
    """
    _check_image(x, check_finite=check_finite)
    h, w = x.shape[-2:]
    if size is None:
        if scale is None or int(scale) != scale or scale < 1:
            raise ValueError(f"give size=(H, W) or a positive integer scale, got scale={scale!r}")
        size = (h * int(scale), w * int(scale))
    size = (int(size[0]), int(size[1]))
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"size must be positive, got {size}")
    y = _bicubic(x, size)
    return y.clamp_(0.0, 1.0) if clamp else y


SR_DOWNSCALES = ("bicubic", "bilinear", "box")


def sr_downsample(x: torch.Tensor, scale: int = SR_SCALE, method: str = "bicubic") -> torch.Tensor:
    """A low-resolution image made another way than the sr4 definition's bicubic (``method`` in ``SR_DOWNSCALES``):
    antialiased bilinear, or the mean of each ``scale`` x ``scale`` block (box, as many cameras bin pixels)."""
    if method not in SR_DOWNSCALES:
        raise ValueError(f"unknown downscale {method!r}; valid: {', '.join(SR_DOWNSCALES)}")
    if method == "bicubic":
        return bicubic_downsample(x, scale)
    size = _low_resolution_size(x, scale)
    if method == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return F.avg_pool2d(x, int(scale))


def pipeline_input(clean: torch.Tensor, degraded: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """What InDIPipeline is given to restore ``degraded``: the LR image for super-resolution (the pipeline upsamples
    it itself, exactly as ``degraded`` was made), else ``degraded`` itself."""
    return bicubic_downsample(clean, upscale_factor) if upscale_factor > 1 else degraded


def degrade_sr4(
    x: torch.Tensor, generator: torch.Generator | None = None, scale: int = SR_SCALE, check_finite: bool = True
) -> torch.Tensor:
    """sr4 task: ``y = bicubic_upsample(bicubic_downsample(x, 4), size=x's size)`` (deterministic).

    ``generator`` is accepted for the common signature and unused.  H and W must be divisible by 4.
    ``check_finite``: as for the other task functions.
    """
    lr = bicubic_downsample(x, scale, check_finite=check_finite)
    return bicubic_upsample(lr, size=tuple(x.shape[-2:]), check_finite=False)  # lr is finite if x is


# --------------------------------------------------------------------------------------------------------------
# jpeg
# --------------------------------------------------------------------------------------------------------------
def _to_uint8_numpy(img: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) float in [0, 1] -> (..., H, W, C) uint8 (clipped, rounded to nearest)."""
    a = (img.detach().float().clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8).cpu()
    return a.movedim(-3, -1).numpy()


def _jpeg_roundtrip(arr: np.ndarray, quality: int, subsampling: int | None = None) -> np.ndarray:
    """(H, W, C) uint8 -> JPEG bytes at ``quality`` (PIL defaults otherwise) -> decoded (H, W, C) uint8."""
    im = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))  # uint8 -> L / RGB
    buf = io.BytesIO()
    options = {} if subsampling is None else {"subsampling": int(subsampling)}
    im.save(buf, format="JPEG", quality=int(quality), **options)
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert(im.mode))
    return out[..., None] if out.ndim == 2 else out


def jpeg_compress(
    x: torch.Tensor,
    quality: ParamLike = None,
    quality_range: tuple[int, int] = JPEG_QUALITY_RANGE,
    generator: torch.Generator | None = None,
    check_finite: bool = True,
    subsampling: ParamLike = None,
) -> torch.Tensor:
    """JPEG encode/decode each image with PIL at ``quality`` (PIL defaults otherwise: 4:2:0 chroma subsampling,
    standard tables, no optimisation).

    Args:
        x: (N, C, H, W) float tensor, C = 3 (RGB) or 1 (grey); values are clipped to [0, 1] and rounded to
            uint8 before encoding.
        quality: an int in [1, 95] or one per image; ``None`` draws an integer per image uniformly in
            ``quality_range`` (inclusive, default 10..50).
        generator: torch.Generator for the qualities.
        check_finite: reject NaN/Inf in ``x`` (default; see the module docstring).
        subsampling: PIL's chroma subsampling, one for the batch or one per image: 0 (4:4:4), 1 (4:2:2) or 2
            (4:2:0); ``None``: PIL's default.

    Returns the decoded images (multiples of 1/255) on ``x.device`` with ``x.dtype``.
    """
    _check_image(x, channels=(1, 3), check_finite=check_finite)
    n = x.shape[0]
    if quality is None:
        lo, hi = _check_range(quality_range, "quality_range", low=1)
        if int(lo) != lo or int(hi) != hi or hi > 100:
            raise ValueError(f"quality_range must hold integers in [1, 100], got {quality_range!r}")
        q = torch.randint(int(lo), int(hi) + 1, (n,), generator=generator, device=_gen_device(generator)).cpu()
    else:
        q = _per_image(quality, n, "quality", low=1)
        if bool((q != q.round()).any()) or bool((q > 100).any()):
            raise ValueError(f"quality must be an integer in [1, 100], got {q.tolist()}")
    chroma = [None] * n
    if subsampling is not None:
        chroma = [int(c) for c in _per_image(subsampling, n, "subsampling").tolist() if c in (0, 1, 2)]
        if len(chroma) != n:
            raise ValueError(f"subsampling must be 0 (4:4:4), 1 (4:2:2) or 2 (4:2:0), got {subsampling!r}")
    x8 = _to_uint8_numpy(x)  # (N, H, W, C), one conversion for the batch
    out = [_jpeg_roundtrip(x8[i], int(q[i]), chroma[i]) for i in range(n)]
    y = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(dtype=torch.float32).div_(255.0)
    return y.to(device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------------------------------------------
# blur (shared)
# --------------------------------------------------------------------------------------------------------------
def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel: ONE grouped ``conv2d`` (groups = N * C), reflect padding.

    Args:
        x: (N, C, H, W) float tensor.
        kernels: (k, k) shared by all images, or (N, k, k) one per image; k odd.  A true convolution
            (the kernel is flipped for ``conv2d``'s cross-correlation), same for every channel.
    Returns (N, C, H, W) on ``x.device``.
    """
    _check_image(x)
    return _blur(x, kernels)


def _blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    if not isinstance(kernels, torch.Tensor):
        raise ValueError(f"kernels must be a torch.Tensor (k, k) or (N, k, k), got {type(kernels).__name__}")
    n, c, h, w = x.shape
    if kernels.ndim == 2:
        kernels = kernels.unsqueeze(0).expand(n, -1, -1)
    if kernels.ndim != 3 or kernels.shape[0] != n or kernels.shape[1] != kernels.shape[2]:
        raise ValueError(f"kernels must have shape (k, k) or ({n}, k, k) for {n} images, got {tuple(kernels.shape)}")
    k = kernels.shape[-1]
    if k % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {k}")
    p = k // 2
    if p >= h or p >= w:
        raise ValueError(
            f"image of size {h}x{w} (HxW) is too small for a {k}x{k} kernel with reflect padding (need H, W > {p})"
        )
    weight = kernels.to(device=x.device, dtype=x.dtype).flip(-2, -1)
    weight = weight.unsqueeze(1).repeat_interleave(c, dim=0)  # (N*C, 1, k, k); channel j of image i -> i*C + j
    xp = F.pad(x.reshape(1, n * c, h, w), (p, p, p, p), mode="reflect")
    return F.conv2d(xp, weight, groups=n * c).reshape(n, c, h, w)


def _blur_noise(
    y: torch.Tensor, noise_sigma: ParamLike, noise_max: float, generator: torch.Generator | None
) -> torch.Tensor:
    sig = _noise_sigmas(noise_sigma, "noise_sigma", noise_max, "noise_max", y.shape[0], generator)
    if not bool((sig > 0).any()):
        return y
    return y + _noise_like(y, sig, generator)


# --------------------------------------------------------------------------------------------------------------
# motion_deblur
# --------------------------------------------------------------------------------------------------------------
def _default_motion_size(max_length: float) -> int:
    size = int(math.ceil(max_length)) + 8
    return size + 1 - size % 2  # odd; 33 for max_length = 25


_EXPOSURE_FRACTIONS = (0.1, 0.5, 1.0)
_TRAJ_POINTS = 500  # polyline vertices per trajectory (every 4th walk position for a full exposure)


def _random_walk(n: int, generator: torch.Generator | None, iters: int = 2000, max_len: float = 60.0) -> np.ndarray:
    """Camera-shake trajectories of Boracchi & Foi (2012) as implemented in DeblurGAN's
    ``motion_blur/generate_trajectory.py`` (same constants; the "anxiety" ``expl`` uniform in [0.003, 0.01],
    the range DeblurGAN's docs recommend and its data scripts draw from — its code default 0.1 * U(0, 1) gives
    tangled scribbles): a constant-speed random walk with momentum, a centripetal pull and rare abrupt shakes,
    with random per-trajectory parameters.  Vectorised over the ``n``
    trajectories (a loop over the ``iters`` time steps only).  All random numbers come from ``generator``.
    Returns complex128 (n, iters) positions (x = real, y = imag)."""
    # One 63-bit seed from ``generator`` drives a numpy PCG64 stream for the (many) per-step numbers: several
    # times faster than drawing them with torch's CPU generator, and still fully determined by ``generator``.
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=_gen_device(generator)).item())
    rng = np.random.default_rng(seed)
    # per-trajectory parameters (names as in DeblurGAN)
    p = rng.random((5, n))
    expl = 0.003 + 0.007 * p[0]  # "anxiety" in [0.003, 0.01]
    centripetal = 0.7 * p[1]
    prob_big_shake = 0.2 * p[2]
    gaussian_shake = 10.0 * p[3]
    init_angle = 2.0 * np.pi * p[4]
    # per-step random numbers, all drawn up front
    u = rng.random((2, iters - 1, n))
    gauss = rng.standard_normal((2, iters - 1, n))

    step = max_len / (iters - 1)
    v = np.where(expl > 0, expl, step) * np.exp(1j * init_angle)
    # v_new = v + next_direction + expl * (gaussian_shake * (g0 + i g1) - centripetal * x) * step, where
    # next_direction = 2 v exp(i (pi + u1 - 0.5)) with probability prob_big_shake * expl, else 0
    shake = u[0] < (prob_big_shake * expl)[None, :]
    mult = 1.0 + np.where(shake, 2.0 * np.exp(1j * (np.pi + (u[1] - 0.5))), 0.0)  # (iters-1, n)
    add = (expl * gaussian_shake * step)[None, :] * (gauss[0] + 1j * gauss[1])  # (iters-1, n)
    pull = expl * centripetal * step
    x = np.zeros((iters, n), dtype=np.complex128)
    # in-place ops on preallocated rows: the loop is pure numpy-call overhead, so fewer calls = faster
    v = v.astype(np.complex128)
    mult_rows, add_rows, x_rows = list(mult), list(add), list(x)
    mag = np.empty(n)
    tmp = np.empty(n, dtype=np.complex128)
    for t in range(iters - 1):
        v *= mult_rows[t]
        v += add_rows[t]
        np.multiply(pull, x_rows[t], out=tmp)
        v -= tmp
        np.abs(v, out=mag)
        mag += 1e-300
        np.divide(step, mag, out=mag)
        v *= mag  # renormalise the speed to `step`
        np.add(x_rows[t], v, out=x_rows[t + 1])
    return x.T


def _extent(points: np.ndarray, n_dirs: int = 64) -> np.ndarray:
    """Diameter (max pairwise distance) of point sets (n, T, 2) -> (n,).

    For each of ``n_dirs`` directions u over [0, pi) take the two extreme points p', q' along u; return the
    largest |p' - q'|.  If (p, q) is the diameter pair (length D) and u the sampled direction nearest to
    p - q (angle <= pi / (2 n_dirs)), the extremes p', q' along u satisfy
    |p' - q'| >= (p' - q').u >= (p - q).u >= D cos(pi / (2 n_dirs)): within 0.03 % below the exact diameter
    for 64 directions, at O(n_dirs T) instead of O(T^2) cost."""
    ang = np.arange(n_dirs) * (np.pi / n_dirs)
    cos, sin = np.cos(ang).astype(np.float32)[None, :, None], np.sin(ang).astype(np.float32)[None, :, None]
    rows = np.ascontiguousarray(points[..., 0], dtype=np.float32)  # float32 is ample for the argmax
    cols = np.ascontiguousarray(points[..., 1], dtype=np.float32)
    out = np.empty(len(points))
    for b0 in range(0, len(points), 16):  # small blocks stay in cache: several times faster than one big array
        pb = points[b0 : b0 + 16]
        proj = rows[b0 : b0 + 16, None, :] * cos
        proj += cols[b0 : b0 + 16, None, :] * sin  # (b, D, T)
        hi = np.take_along_axis(pb, proj.argmax(-1)[..., None], axis=1)  # (b, D, 2) extreme points along each u
        lo = np.take_along_axis(pb, proj.argmin(-1)[..., None], axis=1)
        out[b0 : b0 + 16] = np.sqrt(((hi - lo) ** 2).sum(-1).max(-1))
    return out


def motion_kernels(
    n: int,
    size: int | None = None,
    length_range: tuple[float, float] = MOTION_LENGTH_RANGE,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    return_trajectories: bool = False,
):
    """Random camera-shake blur kernels, (n, size, size) float32, each non-negative and summing to 1.

    Trajectories are the Boracchi & Foi / DeblurGAN random walk with momentum (see ``_random_walk``) over an
    exposure of the first 1/10, 1/2 or all of the walk (like DeblurGAN's PSF fractions; short exposures give
    near-straight strokes, long ones curves and loops), as a polyline of 500 vertices equally spaced in time
    (its extent is exactly that of its vertices), scaled
    so that their extent (max distance between two trajectory points) is ``L ~ U(length_range)`` px (default
    5-25), and shifted so that their centroid is at the kernel centre (no net image shift) when that keeps the
    trajectory inside the kernel, else by the least amount that does.  Rasterised by bilinear (sub-pixel)
    splatting of trajectory samples <= 0.25 px apart, weighted for uniform exposure in time (the walk has
    constant speed), in float64 on the CPU, then moved to ``device``.  Cost: ~40 ms for n = 16 on one CPU core,
    roughly linear in n beyond a few hundred (a bank of 4096 takes seconds), so draw banks up front for
    training.

    Args:
        n: number of kernels.
        size: odd kernel size; default ``ceil(max length) + 8`` made odd (33 for the default range).
        length_range: (min, max) trajectory extent in px.
        generator: torch.Generator for all randomness.
        device: where the kernels go (default CPU).
        return_trajectories: also return the scaled, placed trajectories (n, T, 2) as (row, col) in kernel
            pixel coordinates (float64 numpy array).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    lo, hi = _check_range(length_range, "length_range", low=0.0)
    if size is None:
        size = _default_motion_size(hi)
    if int(size) != size or size % 2 == 0:
        raise ValueError(f"size must be an odd integer, got {size!r}")
    size = int(size)
    if size < math.ceil(hi) + 2:
        raise ValueError(f"size {size} is too small for trajectories up to {hi} px; use size >= {math.ceil(hi) + 2}")

    kernels, trajectories = [], []
    for start in range(0, n, _MOTION_CHUNK):  # bounded memory for large banks; deterministic for a given n
        k_np, pts = _motion_kernel_chunk(min(_MOTION_CHUNK, n - start), size, (lo, hi), generator)
        kernels.append(k_np)
        trajectories.append(pts)
    out = torch.from_numpy(np.concatenate(kernels)).to(device=device or "cpu", dtype=torch.float32)
    if return_trajectories:
        return out, np.concatenate(trajectories)
    return out


_MOTION_CHUNK = 512


def _motion_kernel_chunk(
    n: int, size: int, length_range: tuple[float, float], generator: torch.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """n kernels (float64 numpy) and their placed trajectories; see ``motion_kernels``."""
    walk = _random_walk(n, generator)  # (n, iters) complex
    # Exposure: the first fraction f of the walk, f in {1/10, 1/2, 1} (DeblurGAN's PSF "fractions" 1-3); short
    # exposures give near-straight strokes, full ones curves and loops.  The trajectory is the polyline through
    # _TRAJ_POINTS positions equally spaced in time over the exposure (linear interpolation of the walk).
    frac = np.asarray(_EXPOSURE_FRACTIONS)[(_rand(n, generator).numpy() * len(_EXPOSURE_FRACTIONS)).astype(np.int64)]
    iters = walk.shape[1]
    times = frac[:, None] * (iters - 1) * np.linspace(0.0, 1.0, _TRAJ_POINTS)[None, :]
    i0 = np.minimum(np.floor(times).astype(np.int64), iters - 2)
    a = times - i0
    walk = np.take_along_axis(walk, i0, 1) * (1 - a) + np.take_along_axis(walk, i0 + 1, 1) * a
    pts = np.stack([walk.imag, walk.real], -1)  # (n, T, 2) as (row, col)
    lengths = _uniform(n, length_range, generator).numpy()
    pts = pts * (lengths / np.maximum(_extent(pts), 1e-12))[:, None, None]
    # Kernel centroid (= mean of the segment midpoints, see below) to the centre, clamped so that the bilinear
    # footprint stays inside [0, size - 1].
    c = (size - 1) / 2.0
    centroid = 0.5 * (pts[:, :-1] + pts[:, 1:]).mean(1)
    shift = np.clip(c - centroid, -pts.min(1), (size - 1) - pts.max(1))  # (n, 2)
    pts = pts + shift[:, None, :]

    # Densify each trajectory so that its samples are <= 0.25 px apart.  Every polyline segment spans the same
    # exposure time, so a segment cut into k samples (at the centres of k equal parts) gives each weight 1 / k:
    # uniform exposure, and the kernel's centroid is the mean of the segment midpoints (bilinear splatting
    # preserves centroids exactly).
    seg0, seg1 = pts[:, :-1].reshape(-1, 2), pts[:, 1:].reshape(-1, 2)  # (n * S, 2)
    n_seg = pts.shape[1] - 1
    k = np.maximum(1, np.ceil(np.linalg.norm(pts[:, 1:] - pts[:, :-1], axis=-1).max(1) / 0.25)).astype(np.int64)  # (n,)
    per_seg = np.repeat(k, n_seg)  # (n * S,)
    seg_id = np.repeat(np.arange(n * n_seg), per_seg)
    first = np.cumsum(per_seg) - per_seg
    frac = (np.arange(len(seg_id)) - first[seg_id] + 0.5) / per_seg[seg_id]
    dense = seg0[seg_id] + frac[:, None] * (seg1[seg_id] - seg0[seg_id])
    weights = 1.0 / per_seg[seg_id]
    return _splat(dense, seg_id // n_seg, weights, n, size), pts


def _splat(points: np.ndarray, kernel_id: np.ndarray, weights: np.ndarray, n: int, size: int) -> np.ndarray:
    """Bilinear splatting of weighted points (P, 2) (row, col) into kernel ``kernel_id`` (P,) of (n, size, size);
    each kernel is normalised to sum 1."""
    p = np.clip(points, 0.0, size - 1.0)
    p0 = np.minimum(np.floor(p), max(size - 2, 0))
    f = p - p0
    r0, c0 = p0[:, 0].astype(np.int64), p0[:, 1].astype(np.int64)
    fr, fc = f[:, 0], f[:, 1]
    base = kernel_id * (size * size)
    idx, wgt = [], []
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        idx.append(base + np.minimum(r0 + dr, size - 1) * size + np.minimum(c0 + dc, size - 1))
        wgt.append(w * weights)
    out = np.bincount(np.concatenate(idx), np.concatenate(wgt), minlength=n * size * size).reshape(n, size, size)
    return out / out.sum(axis=(1, 2), keepdims=True)


def motion_blur(
    x: torch.Tensor,
    kernels: torch.Tensor | None = None,
    noise_sigma: ParamLike = None,
    noise_max: float = BLUR_NOISE_MAX,
    generator: torch.Generator | None = None,
    length_range: tuple[float, float] = MOTION_LENGTH_RANGE,
    kernel_size: int | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """motion_deblur task: ``y = x * k + n`` (reflect-padded convolution, no clipping).

    Args:
        x: (N, C, H, W) float tensor, any C.
        kernels: (k, k) or (N, k, k) kernels; ``None`` draws ``motion_kernels(N, kernel_size, length_range)``.
        noise_sigma: noise std (float or one per image); ``None`` draws one per image in ``[0, noise_max]``;
            0 for a noiseless blur.
        generator: torch.Generator for kernels, sigmas and noise (in that order).
        check_finite: reject NaN/Inf in ``x`` (default; see the module docstring).
    """
    _check_image(x, check_finite=check_finite)
    if kernels is None:
        kernels = motion_kernels(x.shape[0], size=kernel_size, length_range=length_range, generator=generator)
    return _blur_noise(_blur(x, kernels), noise_sigma, noise_max, generator)


# --------------------------------------------------------------------------------------------------------------
# defocus_deblur
# --------------------------------------------------------------------------------------------------------------
def disk_kernels(
    radius: ParamLike,
    size: int | None = None,
    supersample: int = 16,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Antialiased disk (pillbox) kernels, (n, size, size), normalised to sum 1.

    Each pixel's value is the fraction of its area inside the disk of radius ``r`` centred on the middle
    pixel, measured by ``supersample x supersample`` sub-pixel samples.  ``r <= 0.5`` gives a delta (identity).

    Args:
        radius: float or one per kernel (sequence / tensor of length n), in px, >= 0.
        size: odd kernel size; default ``2 * ceil(max r) + 1`` (13 for r <= 6).
        supersample: sub-samples per pixel side.
        device: where the kernels go (default: radius's device if a tensor, else CPU).
    """
    if device is None:
        device = radius.device if isinstance(radius, torch.Tensor) else "cpu"
    r = _per_image(radius, torch.as_tensor(radius).numel(), "radius")
    rmax = float(r.max())
    if size is None:
        size = 2 * int(math.ceil(rmax)) + 1
    if int(size) != size or size % 2 == 0 or size < 1:
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    size = int(size)
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    s = int(supersample)
    c = (size - 1) / 2.0
    sub = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5  # sub-pixel offsets in (-0.5, 0.5)
    coords = (torch.arange(size, dtype=torch.float64) - c).view(-1, 1) + sub.view(1, -1)  # (size, s)
    d2 = coords.view(size, 1, s, 1) ** 2 + coords.view(1, size, 1, s) ** 2  # (size, size, s, s)
    cov = (d2.unsqueeze(0) <= (r**2).view(-1, 1, 1, 1, 1)).to(torch.float64).mean(dim=(-1, -2))  # (n, size, size)
    total = cov.sum(dim=(1, 2), keepdim=True)
    delta = torch.zeros(size, size, dtype=torch.float64)
    delta[size // 2, size // 2] = 1.0
    k = torch.where(total > 0, cov / total.clamp_min(1e-12), delta)
    return k.to(device=device, dtype=torch.float32)


def defocus_blur(
    x: torch.Tensor,
    radius: ParamLike = None,
    radius_range: tuple[float, float] = DEFOCUS_RADIUS_RANGE,
    noise_sigma: ParamLike = None,
    noise_max: float = BLUR_NOISE_MAX,
    generator: torch.Generator | None = None,
    kernel_size: int | None = None,
    kernels: torch.Tensor | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """defocus_deblur task: ``y = x * disk(r) + n`` (reflect-padded convolution, no clipping).

    Args:
        x: (N, C, H, W) float tensor, any C.
        radius: disk radius in px (float or one per image); ``None`` draws one per image uniformly in
            ``radius_range`` (default 1-6).
        noise_sigma: noise std (float or one per image); ``None`` draws one per image in ``[0, noise_max]``;
            0 for a noiseless blur.
        generator: torch.Generator for radii, sigmas and noise (in that order).
        kernel_size: odd kernel size shared by the batch; default ``2 * ceil(max(radius_range)) + 1`` (13) when
            radii are drawn, else ``2 * ceil(max r) + 1``.
        kernels: (k, k) or (N, k, k) disk kernels from :func:`disk_kernels` (e.g. a bank drawn once: rasterising
            costs milliseconds per batch on the CPU); when given, no radius is drawn and ``radius``,
            ``radius_range`` and ``kernel_size`` are unused.
        check_finite: reject NaN/Inf in ``x`` (default; see the module docstring).
    """
    _check_image(x, check_finite=check_finite)
    if kernels is not None:
        return _blur_noise(_blur(x, kernels), noise_sigma, noise_max, generator)
    n = x.shape[0]
    if radius is None:
        lo, hi = _check_range(radius_range, "radius_range", low=0.0)
        r = _uniform(n, (lo, hi), generator)
        if kernel_size is None:
            kernel_size = 2 * int(math.ceil(hi)) + 1
    else:
        r = _per_image(radius, n, "radius")
    return _blur_noise(_blur(x, disk_kernels(r, size=kernel_size)), noise_sigma, noise_max, generator)


# --------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------
DEGRADATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "denoise": add_gaussian_noise,
    "sr4": degrade_sr4,
    "jpeg": jpeg_compress,
    "motion_deblur": motion_blur,
    "defocus_deblur": defocus_blur,
}
TASK_IDS = tuple(DEGRADATIONS)


def _check_task(task) -> str:
    if task not in DEGRADATIONS:
        raise ValueError(f"unknown task {task!r}; valid task ids: {', '.join(TASK_IDS)}")
    return task


def degrade(task: str, x: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """Apply task ``task``'s degradation: ``DEGRADATIONS[task](x, generator=generator, **kwargs)``.

    Returns a tensor of x's shape (for sr4 the bicubic-upscaled LR image, i.e. the network's input).
    """
    return DEGRADATIONS[_check_task(task)](x, generator=generator, **kwargs)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> (1, 3, H, W) float32 in [0, 1] (converted to RGB; alpha is dropped)."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """(1, C, H, W) or (C, H, W) float tensor -> PIL RGB/L image (clipped to [0, 1], rounded to uint8)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {x.shape[0]}")
        x = x[0]
    arr = _to_uint8_numpy(x)
    return Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))  # uint8 -> L / RGB


# Any offset that is not a multiple of 2**32 works: torch's CPU generator keeps only the low 32 bits of a seed.
DEGRADATION_SEED_OFFSET = 0x9E3779B9


def degradation_generator(seed: int) -> torch.Generator:
    """The CPU generator the degradations draw from for ``seed``: independent of a pipeline seeded with
    ``torch.Generator().manual_seed(seed)`` (see the module docstring), so one seed can serve both."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed((int(seed) + DEGRADATION_SEED_OFFSET) % 2**64)


def degrade_pil(task: str, image: Image.Image, seed: int = 0, **kwargs) -> Image.Image:
    """Degrade a clean PIL image the way task ``task`` expects its input (CLI ``indi degrade``, the demo).

    The image is converted to RGB.  Randomness comes from ``degradation_generator(seed)``; ``kwargs``
    go to the task function (e.g. ``sigma=25/255``, ``quality=20``, ``radius=3``).  The result is clipped
    and rounded to uint8.

    **sr4 returns the low-resolution image** (``W // 4 x H // 4``), not the upscaled network input, since the
    LR image is what a user feeds the pipeline; the image is first cropped at the bottom/right to a multiple
    of 4.  Every other task returns an image of the input's size.
    """
    _check_task(task)
    x = pil_to_tensor(image)
    if task == "sr4":
        scale = int(kwargs.pop("scale", SR_SCALE))
        if kwargs:
            raise ValueError(f"unexpected arguments for sr4: {', '.join(kwargs)}")
        y = bicubic_downsample(crop_to_multiple(x, scale), scale)
    else:
        y = degrade(task, x, generator=degradation_generator(seed), **kwargs)
    return tensor_to_pil(y)
