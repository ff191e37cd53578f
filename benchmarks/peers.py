"""Peer models to compare against in the same run (evaluation only: never bundled, published or trained on).

CDnCNN (Zhang et al., IEEE TIP 2017) as ``../shared/peers/README.md`` describes the converted weights: 20 plain 3x3
convolutions with ReLU between them, residual output (input minus the stack's output).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

PEERS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "peers"


def cdncnn(name: str = "cdncnn_b", folder: Path = PEERS_DIR) -> nn.Module:
    """The CDnCNN of ``folder/<name>.safetensors`` (cdncnn_b blind, cdncnn_s25, cdncnn_s50); FileNotFoundError if absent."""
    from safetensors.torch import load_file

    path = Path(folder) / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no peer weights at {path} (../shared/peers of the checkout)")
    layers: list[nn.Module] = []
    for k in range(20):
        layers.append(nn.Conv2d(3 if k == 0 else 64, 3 if k == 19 else 64, 3, padding=1))
        if k < 19:
            layers.append(nn.ReLU(inplace=True))
    stack = nn.Sequential(*layers)
    stack.load_state_dict({key.removeprefix("model."): value for key, value in load_file(path).items()})
    return _Residual(stack).eval()


class _Residual(nn.Module):
    def __init__(self, stack: nn.Module):
        super().__init__()
        self.model = stack

    @torch.no_grad()
    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.model(noisy)
