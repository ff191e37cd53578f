"""Grow a trained InDINet into a deeper one that computes exactly the same function, to fine-tune from there.

Each gated block starts as the identity when its layer scales are zero, and its FiLM is neutral when its rows of the
time MLP's last layer are zero. So a net with more blocks per level can start from a trained net: the trained blocks
keep their weights (and their FiLM rows), the added blocks are appended to their level as identities, and training
then decides what they do. Everything else (width, levels, unshuffle, time embedding) must match.
"""

from __future__ import annotations

import torch

from indi_pipeline.network import InDINet

# Config keys that must be equal for the weights to carry over one to one.
FIXED_KEYS = ("in_channels", "out_channels", "width", "unshuffle", "time_embedding_dim", "num_train_timesteps")
# The config keys a growth may raise (train_indi.py's flags of the same names; the cards name a growth by them).
BLOCK_KEYS = ("encoder_blocks", "middle_blocks", "decoder_blocks")


def block_names(config) -> list[str]:
    """Module names of the gated blocks, in the order their FiLM rows are laid out (InDINet.__init__)."""
    names = [f"encoders.{level}.{i}" for level, n in enumerate(config["encoder_blocks"]) for i in range(n)]
    names += [f"middle.{i}" for i in range(config["middle_blocks"])]
    names += [f"decoders.{level}.{i}" for level, n in enumerate(config["decoder_blocks"]) for i in range(n)]
    return names


def film_rows(net: InDINet) -> dict[str, slice]:
    """Each block's rows in the time MLP's last layer."""
    rows, start = {}, 0
    for name, channels in zip(block_names(net.config), net.film_channels):
        rows[name] = slice(start, start + channels)
        start += channels
    return rows


def grow_network(
    base: InDINet,
    encoder_blocks: tuple[int, ...] | None = None,
    middle_blocks: int | None = None,
    decoder_blocks: tuple[int, ...] | None = None,
) -> InDINet:
    """A new InDINet with at least as many blocks per level as ``base`` and the same output for every input."""
    config = dict(base.config)
    target = {
        "encoder_blocks": tuple(encoder_blocks or config["encoder_blocks"]),
        "middle_blocks": middle_blocks if middle_blocks is not None else config["middle_blocks"],
        "decoder_blocks": tuple(decoder_blocks or config["decoder_blocks"]),
    }
    for key in ("encoder_blocks", "decoder_blocks"):
        old, new = tuple(config[key]), target[key]
        if len(new) != len(old) or any(n < o for n, o in zip(new, old)):
            raise ValueError(f"can only add blocks to the {len(old)} levels of {key} {old}, got {new}")
    if target["middle_blocks"] < config["middle_blocks"]:
        raise ValueError(f"can only add middle blocks to {config['middle_blocks']}, got {target['middle_blocks']}")

    grown = InDINet(**{key: config[key] for key in FIXED_KEYS}, **target).to(base.dtype)
    base_state = base.state_dict()
    state = grown.state_dict()
    for key, value in state.items():
        if key.startswith("time_mlp.2."):
            continue  # laid out per block: copied below
        if key in base_state:
            state[key] = base_state[key].clone()
        elif key.endswith((".scale1", ".scale2")):
            state[key] = torch.zeros_like(value)  # an added block: identity (already zero at init; made explicit)
    base_rows, grown_rows = film_rows(base), film_rows(grown)
    for key in ("time_mlp.2.weight", "time_mlp.2.bias"):
        state[key] = torch.zeros_like(state[key])  # added blocks: neutral FiLM
        for name, rows in base_rows.items():
            state[key][grown_rows[name]] = base_state[key][rows]
    grown.load_state_dict(state)
    return grown
