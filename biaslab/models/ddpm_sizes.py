"""DDPM denoiser sizes per architecture, and their parameter counts without torch.

- `fc`: an MLP on flattened images (see `biaslab.models.unet.MlpDenoiser`):
  MLP_WIDTH units and MLP_BLOCKS residual blocks, each given the time step, plus a
  skip path that scales the noisy image by a factor of the time step.
- `conv_small`, `conv`, `conv_large`: a U-Net (see `biaslab.models.unet.UNet`)
  whose first level has 22, 32 and 64 channels and whose later levels have
  twice that, one residual block per level on each side and self-attention at
  the bottom. Every weight but the 3-channel input and output convolutions
  grows with the square of the width, so `conv_small` has 0.47 and
  `conv_large` 4.0 times the parameters of `conv`.
"""

from __future__ import annotations

import math

from biaslab.design import Architecture, DdpmModel

UNET_CHANNELS: dict[Architecture, int] = {"conv_small": 22, "conv": 32, "conv_large": 64}
MLP_WIDTH = 1024
MLP_BLOCKS = 2
MLP_TIME_FEATURES = 128
# The U-Net halves the image until the feature map is BOTTOM_SIZE wide.
BOTTOM_SIZE = 8
MAX_NORM_GROUPS = 8


def level_multipliers(image_size: int) -> list[int]:
    """Return each U-Net level's width as a multiple of the first: 32x32 -> [1, 2, 2]."""
    if image_size < BOTTOM_SIZE or image_size & (image_size - 1):
        raise ValueError(f"image_size {image_size} is not supported: use a power of two >= 8")
    levels = (image_size // BOTTOM_SIZE).bit_length()
    return [1] + [2] * (levels - 1)


def norm_groups(channels: int) -> int:
    """Return the GroupNorm group count for `channels`: the largest divisor up to 8."""
    return math.gcd(channels, MAX_NORM_GROUPS)


def _linear(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features


def _conv3(in_channels: int, out_channels: int) -> int:
    return 9 * in_channels * out_channels + out_channels


def residual_block_parameters(in_channels: int, out_channels: int, time_features: int) -> int:
    """Return the parameters of `unet.ResidualBlock(in_channels, out_channels, time_features)`."""
    count = 2 * in_channels + _conv3(in_channels, out_channels)
    count += _linear(time_features, out_channels)
    count += 2 * out_channels + _conv3(out_channels, out_channels)
    if in_channels != out_channels:
        count += _linear(in_channels, out_channels)
    return count


def unet_parameter_count(base: int, image_size: int) -> int:
    """Return the parameters of `unet.UNet(base, image_size)`."""
    time_features = 4 * base
    channels = [base * multiplier for multiplier in level_multipliers(image_size)]
    count = _linear(base, time_features) + _linear(time_features, time_features)
    count += _conv3(3, base)

    previous = base
    for level, width in enumerate(channels):
        count += residual_block_parameters(previous, width, time_features)
        if level < len(channels) - 1:
            count += _conv3(width, width)  # the strided downsampling convolution
        previous = width

    bottom = channels[-1]
    attention = 2 * bottom + _linear(bottom, 3 * bottom) + _linear(bottom, bottom)
    count += 2 * residual_block_parameters(bottom, bottom, time_features) + attention

    for level in reversed(range(len(channels))):
        width = channels[level]
        count += residual_block_parameters(previous + width, width, time_features)
        if level > 0:
            count += _conv3(width, width)  # the convolution after nearest upsampling
        previous = width

    return count + 2 * base + _conv3(base, 3)


def mlp_parameter_count(image_size: int, width: int, blocks: int) -> int:
    """Return the parameters of `unet.MlpDenoiser(image_size, width, blocks)`."""
    pixels = 3 * image_size * image_size
    count = _linear(MLP_TIME_FEATURES, width) + _linear(width, width)
    count += _linear(pixels, width)
    count += blocks * (2 * _linear(width, width) + _linear(width, width))
    return count + _linear(width, pixels) + _linear(width, 1)


def ddpm_parameter_count(model: DdpmModel, image_size: int) -> int:
    """Return the trained parameters of the denoiser that `model` describes."""
    if model.architecture == "fc":
        return mlp_parameter_count(image_size, MLP_WIDTH, MLP_BLOCKS)
    return unet_parameter_count(UNET_CHANNELS[model.architecture], image_size)
