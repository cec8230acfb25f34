"""Noise-prediction networks for the DDPM: a small U-Net and an MLP, both given the time step.

The U-Net follows Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic
Models" (2020), appendix B, at a smaller scale: residual blocks with
GroupNorm and SiLU, a sinusoidal time embedding added inside every block,
strided convolutions down, nearest upsampling and convolutions up, skip
connections by concatenation, and self-attention at the lowest resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from biaslab.models.ddpm_sizes import MLP_TIME_FEATURES, level_multipliers, norm_groups


def timestep_embedding(t: torch.Tensor, features: int) -> torch.Tensor:
    """Return (B, features) sinusoids of the (B,) time steps, as in the Transformer."""
    half = features // 2
    frequencies = torch.exp(
        -math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    angles = t.float()[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with the time embedding added between them."""

    def __init__(self, in_channels: int, out_channels: int, time_features: int) -> None:
        super().__init__()
        self.norm_in = nn.GroupNorm(norm_groups(in_channels), in_channels)
        self.conv_in = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_features, out_channels)
        self.norm_out = nn.GroupNorm(norm_groups(out_channels), out_channels)
        self.conv_out = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(F.silu(self.norm_in(x)))
        h = h + self.time(F.silu(time))[:, :, None, None]
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions of a feature map, with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # (B, HW, C)
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        attended = attended.transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.out(attended)


class UNet(nn.Module):
    """A U-Net from (B, 3, H, W) noisy images and (B,) time steps to predicted noise."""

    def __init__(self, base: int, image_size: int) -> None:
        super().__init__()
        self.base = base
        time_features = 4 * base
        channels = [base * multiplier for multiplier in level_multipliers(image_size)]
        self.time_mlp = nn.Sequential(
            nn.Linear(base, time_features), nn.SiLU(), nn.Linear(time_features, time_features)
        )
        self.input = nn.Conv2d(3, base, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = base
        for level, width in enumerate(channels):
            self.down.append(ResidualBlock(previous, width, time_features))
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width

        bottom = channels[-1]
        self.middle_in = ResidualBlock(bottom, bottom, time_features)
        self.attention = SelfAttention(bottom)
        self.middle_out = ResidualBlock(bottom, bottom, time_features)

        # Built from the lowest level up; forward walks them in this order.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(channels))):
            width = channels[level]
            self.up.append(ResidualBlock(previous + width, width, time_features))
            if level > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))
            previous = width

        self.output_norm = nn.GroupNorm(norm_groups(base), base)
        self.output = nn.Conv2d(base, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))  # (B, 4 * base)
        h = self.input(x)

        skips = []
        for level, block in enumerate(self.down):
            h = block(h, time)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)  # halves H and W

        h = self.middle_out(self.attention(self.middle_in(h, time)), time)

        for index, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), time)
            if index < len(self.upsample):
                h = self.upsample[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))

        return self.output(F.silu(self.output_norm(h)))


class MlpBlock(nn.Module):
    """A residual block of two linear layers, with the time embedding added between them."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear_in = nn.Linear(width, width)
        self.time = nn.Linear(width, width)
        self.linear_out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        inner = self.linear_in(F.silu(h)) + self.time(F.silu(time))
        return h + self.linear_out(F.silu(inner))


class MlpDenoiser(nn.Module):
    """A fully connected noise predictor on flattened (B, 3 * H * W) images.

    The noise has as many dimensions as the image, more than the hidden width, so no
    bottleneck of that width can pass it through: without help the MLP stayed at the loss
    of predicting zero. A scale per time step times the noisy image carries the noise,
    which is all of a very noisy image, and the MLP adds what the scale misses.
    """

    def __init__(self, image_size: int, width: int, blocks: int) -> None:
        super().__init__()
        pixels = 3 * image_size * image_size
        self.time_mlp = nn.Sequential(
            nn.Linear(MLP_TIME_FEATURES, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.input = nn.Linear(pixels, width)
        self.blocks = nn.ModuleList(MlpBlock(width) for _ in range(blocks))
        self.output = nn.Linear(width, pixels)
        self.skip_scale = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time_mlp(timestep_embedding(t, MLP_TIME_FEATURES).to(x.dtype))  # (B, W)
        h = self.input(x.flatten(1))
        for block in self.blocks:
            h = block(h, time)
        scale = self.skip_scale(F.silu(time))[:, :, None, None]  # (B, 1, 1, 1)
        return self.output(F.silu(h)).reshape(x.shape) + scale * x
