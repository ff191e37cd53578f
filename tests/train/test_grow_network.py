"""train/grow_network.py: a trained InDINet grown to more blocks per level computes the same function at the start."""

from __future__ import annotations

import pytest
import torch

from indi_pipeline import InDINet
from train.grow_network import block_names, grow_network


def trained_like_net() -> InDINet:
    """A small net whose every weight is non-zero (as after training: layer scales and FiLM rows included)."""
    torch.manual_seed(0)
    net = InDINet(width=12, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1), time_embedding_dim=16)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_grown_net_has_the_same_outputs_and_more_blocks():
    base = trained_like_net()
    grown = grow_network(base, encoder_blocks=(2, 1), middle_blocks=2, decoder_blocks=(1, 3)).eval()
    assert list(grown.config.encoder_blocks) == [2, 1] and list(grown.config.decoder_blocks) == [1, 3]
    assert grown.config.middle_blocks == 2 and grown.config.width == 12
    assert len(block_names(grown.config)) == len(block_names(base.config)) + 4
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in base.parameters())
    x = torch.rand(3, 3, 16, 24)
    with torch.no_grad():
        for t in (torch.tensor([1000.0, 500.0, 10.0]), 700.0):  # per-image t (training) and one t (inference)
            torch.testing.assert_close(grown(x, t).sample, base(x, t).sample, rtol=0, atol=1e-5)
    # the base's untouched net is not modified, and the added blocks can learn (their scales get gradients)
    grown.train()
    grown(x, torch.tensor([900.0, 400.0, 20.0])).sample.square().mean().backward()
    assert grown.encoders[0][1].scale1.grad.abs().sum() > 0
    assert base.encoders[0][0].scale1.grad is None


def test_growing_only_adds_blocks():
    base = trained_like_net()
    with pytest.raises(ValueError, match="can only add blocks"):
        grow_network(base, encoder_blocks=(1,))
    with pytest.raises(ValueError, match="can only add blocks"):
        grow_network(base, decoder_blocks=(0, 1))
    with pytest.raises(ValueError, match="can only add middle blocks"):
        grow_network(base, middle_blocks=0)
    same = grow_network(base)  # nothing to add: a copy
    assert same.config.encoder_blocks == base.config.encoder_blocks and same is not base
