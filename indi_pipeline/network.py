"""InDINet: a fast, time-conditioned restoration network F(x_t, t) that predicts the clean image.

Design (NAFNet-style, Chen et al. 2022, chosen for CPU speed): pixel-unshuffle at the input so the first level already
runs at half resolution, a U-Net of gated blocks (1x1 conv, depthwise 3x3 conv, SimpleGate), per-pixel channel
LayerNorm whose affine parameters come from the time embedding (FiLM), and a residual output (x_t + correction).

Deliberately left out of NAFNet: the "simplified channel attention" (a global average pool). It makes the output of a
pixel depend on the whole image, so tiled inference of a large photo would differ from untiled inference.
diffusers' UNet2DModel is about 60x slower on the CPU at equal parameter count (see README, Performance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .safe_loading import SafetensorsOnlyLoading


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel, without affine parameters of its own: the time FiLM supplies
    scale and shift. ``norm(x, gain, shift)`` returns ``layer_norm(x) * (1 + gain) + shift``."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps

    def forward(self, x: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        # A permuted view is contiguous when x is channels_last, so layer_norm's fused kernel runs without a copy.
        pixels = x.permute(0, 2, 3, 1)
        if gain.shape[0] == 1:
            # One FiLM for the whole batch (inference: every image at the same t). layer_norm applies it as its
            # affine in the same pass; done separately it cost two more passes over memory (a quarter of a CPU
            # forward went to such element-wise multiplies and adds).
            normalised = F.layer_norm(pixels, (self.channels,), 1.0 + gain.flatten(), shift.flatten(), self.eps)
            return normalised.permute(0, 3, 1, 2)
        return F.layer_norm(pixels, (self.channels,), eps=self.eps).permute(0, 3, 1, 2) * (1.0 + gain) + shift


def scaled_conv(conv: nn.Conv2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``conv(x) * scale`` for a 1x1 convolution and a per-channel scale, as one convolution with scaled weights (the
    weights are tiny; a separate multiply would be another pass over the whole feature map)."""
    return F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), conv.bias * scale.flatten())


class GatedBlock(nn.Module):
    """NAFNet block without channel attention: norm -> 1x1 -> dw3x3 -> gate -> 1x1, then a gated 1x1 FFN."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.expand = nn.Conv2d(channels, 2 * channels, 1)
        self.depthwise = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels)
        self.project = nn.Conv2d(channels, channels, 1)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn_expand = nn.Conv2d(channels, 2 * channels, 1)
        self.ffn_project = nn.Conv2d(channels, channels, 1)
        # Layer scales start at zero so that every block begins as the identity (stable early training).
        self.scale1 = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale2 = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        # film: (N, 4C, 1, 1) = (gain1, shift1, gain2, shift2), gains centred on 1.
        # film may have batch 1 (one t for every image), which the norms then apply in their own pass.
        gain1, shift1, gain2, shift2 = film.chunk(4, dim=1)
        h = self.gate(self.depthwise(self.expand(self.norm1(x, gain1, shift1))))
        x = x + scaled_conv(self.project, h, self.scale1)
        h = self.gate(self.ffn_expand(self.norm2(x, gain2, shift2)))
        return x + scaled_conv(self.ffn_project, h, self.scale2)


class InDINet(SafetensorsOnlyLoading, ModelMixin, ConfigMixin):
    """Time-conditioned image-to-image network for InDI. Call as ``net(sample, timestep).sample``.

    ``from_pretrained`` reads safetensors only and names what is wrong with a broken repo (`SafetensorsOnlyLoading`).

    Args:
        in_channels / out_channels (`int`, defaults to 3): image channels; the output is ``sample + correction``.
        width (`int`, defaults to 32): channels of the first level; each level below doubles them.
        encoder_blocks (`tuple[int]`, defaults to `(1, 1, 1, 1)`): gated blocks per encoder level.
        middle_blocks (`int`, defaults to 2): gated blocks at the lowest resolution (1/32 of the input).
        decoder_blocks (`tuple[int]`, defaults to `(1, 1, 1, 1)`): gated blocks per decoder level.

    The defaults (6.7 M parameters) are the zoo's network: most parameters sit at the lowest resolution, where
    they are cheap, and one forward at 512x512 stays under 300 ms on 2 CPU cores (``indi bench``).
        unshuffle (`int`, defaults to 2): pixel-unshuffle factor of the input (speed: the first level runs at 1/2).
            Keep ``width >= in_channels * unshuffle**2``: below it, the first and last convolutions leave a part of
            every image that the network can neither see nor correct (``train_indi.py`` refuses to train that).
        time_embedding_dim (`int`, defaults to 128): width of the timestep MLP.
        num_train_timesteps (`int`, defaults to 1000): the timestep value that means t = 1.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        encoder_blocks: tuple[int, ...] = (1, 1, 1, 1),
        middle_blocks: int = 2,
        decoder_blocks: tuple[int, ...] = (1, 1, 1, 1),
        unshuffle: int = 2,
        time_embedding_dim: int = 128,
        num_train_timesteps: int = 1000,
    ):
        super().__init__()
        if len(encoder_blocks) != len(decoder_blocks):
            raise ValueError(
                f"encoder_blocks {tuple(encoder_blocks)} and decoder_blocks {tuple(decoder_blocks)} need the same length"
            )
        if in_channels != out_channels:
            raise ValueError("InDINet predicts a residual: in_channels must equal out_channels")
        self.pixel_unshuffle = nn.PixelUnshuffle(unshuffle)
        self.intro = nn.Conv2d(in_channels * unshuffle**2, width, 3, padding=1)
        self.outro = nn.Conv2d(width, out_channels * unshuffle**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(unshuffle)
        # Zero output conv: with the zero layer scales below, F(x_t, t) = x_t exactly at initialisation.
        nn.init.zeros_(self.outro.weight)
        nn.init.zeros_(self.outro.bias)

        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        channels, film_channels = width, []
        for n in encoder_blocks:
            self.encoders.append(nn.ModuleList(GatedBlock(channels) for _ in range(n)))
            film_channels += [4 * channels] * n
            self.downs.append(nn.Conv2d(channels, 2 * channels, 2, stride=2))
            channels *= 2
        self.middle = nn.ModuleList(GatedBlock(channels) for _ in range(middle_blocks))
        film_channels += [4 * channels] * middle_blocks
        for n in decoder_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.decoders.append(nn.ModuleList(GatedBlock(channels) for _ in range(n)))
            film_channels += [4 * channels] * n

        self.film_channels = film_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embedding_dim, time_embedding_dim),
            nn.SiLU(),
            nn.Linear(time_embedding_dim, sum(film_channels)),
        )
        # Zero FiLM at initialisation: gains 1, shifts 0, i.e. a plain LayerNorm until t matters.
        nn.init.zeros_(self.time_mlp[-1].weight)
        nn.init.zeros_(self.time_mlp[-1].bias)

    @property
    def input_multiple(self) -> int:
        """Height and width must be multiples of this (the pipeline pads and crops back)."""
        return self.input_multiple_of(self.config.unshuffle, len(self.config.encoder_blocks))

    @staticmethod
    def input_multiple_of(unshuffle: int, levels: int) -> int:
        """The input multiple of a configuration (before building it): the unshuffle, then one 2x down per level."""
        return unshuffle * 2**levels

    def _film(self, timestep: torch.Tensor | float | int, batch: int, device, dtype) -> list[torch.Tensor]:
        """Per-block FiLM tensors, (N, 4C, 1, 1); (1, 4C, 1, 1) for a scalar timestep (the same t for all N)."""
        timestep = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if timestep.ndim == 0:
            timestep = timestep.view(1)
        elif timestep.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(timestep.shape)}")
        embedding = get_timestep_embedding(timestep, self.config.time_embedding_dim, flip_sin_to_cos=True)
        film = self.time_mlp(embedding.to(dtype))[:, :, None, None]
        return list(film.split(self.film_channels, dim=1))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | int, return_dict: bool = True
    ) -> UNet2DOutput | tuple:
        """Predicts the clean image from x_t (``sample``, N x C x H x W) at ``timestep`` (= t * num_train_timesteps):
        a scalar when every image is at the same t (inference; the faster path), else one value per image."""
        n, _, height, width = sample.shape
        multiple = self.input_multiple
        if height % multiple or width % multiple:
            raise ValueError(f"InDINet needs height and width divisible by {multiple}, got {height}x{width}")
        films = iter(self._film(timestep, n, sample.device, sample.dtype))

        x = self.intro(self.pixel_unshuffle(sample))
        skips = []
        for blocks, down in zip(self.encoders, self.downs):
            for block in blocks:
                x = block(x, next(films))
            skips.append(x)
            x = down(x)
        for block in self.middle:
            x = block(x, next(films))
        for up, blocks, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = up(x) + skip
            for block in blocks:
                x = block(x, next(films))
        out = sample + self.pixel_shuffle(self.outro(x))
        if not return_dict:
            return (out,)
        return UNet2DOutput(sample=out)
