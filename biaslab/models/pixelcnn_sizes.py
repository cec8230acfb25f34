"""PixelCNN network sizes per architecture, and their parameter counts without torch.

- `fc`: a MADE with two masked hidden layers of MADE_HIDDEN units and
  PIXEL_FEATURES masked features per pixel (see `biaslab.models.made`).
- `conv_small`, `conv`, `conv_large`: a gated PixelCNN (see
  `biaslab.models.gated`) of GATED_LAYERS layers with GATED_KERNEL-wide
  kernels. Only the width changes: 23, 32 and 64 channels. Nearly every
  weight grows with the square of the width, so `conv_small` has 0.52 to 0.53
  and `conv_large` 3.88 to 3.97 times the parameters of `conv` for 1 to 20
  mixture components (the head's last layer grows only linearly).
"""

from __future__ import annotations

from biaslab.design import Architecture, PixelCnnModel

GATED_CHANNELS: dict[Architecture, int] = {"conv_small": 23, "conv": 32, "conv_large": 64}
GATED_LAYERS = 6
GATED_KERNEL = 5
MADE_HIDDEN = 512
# Masked features per pixel between the MADE's last hidden layer and its shared head.
PIXEL_FEATURES = 8
PARAMS_PER_COMPONENT = 10


def _conv(in_channels: int, out_channels: int, kernel_area: int) -> int:
    return in_channels * out_channels * kernel_area + out_channels


def gated_parameter_count(channels: int, layers: int, kernel_size: int, out_channels: int) -> int:
    """Return the parameters of `GatedPixelCnn(channels, layers, kernel_size, out_channels)`."""
    half = kernel_size // 2
    vertical_area, horizontal_area = (half + 1) * kernel_size, half + 1
    inputs = _conv(3, channels, vertical_area) + _conv(3, channels, horizontal_area)
    layer = (
        _conv(channels, 2 * channels, vertical_area)
        + _conv(2 * channels, 2 * channels, 1)
        + _conv(channels, 2 * channels, horizontal_area)
        + _conv(channels, channels, 1)
    )
    head = _conv(channels, 2 * channels, 1) + _conv(2 * channels, out_channels, 1)
    return inputs + layers * layer + head


def made_parameter_count(image_size: int, hidden: int, out_channels: int) -> int:
    """Return the parameters of `MadeNetwork(image_size, hidden, out_channels)`, masked ones too."""
    pixels = image_size * image_size
    return (
        _conv(3 * pixels, hidden, 1)
        + _conv(hidden, hidden, 1)
        + _conv(hidden, pixels * PIXEL_FEATURES, 1)
        + _conv(PIXEL_FEATURES, out_channels, 1)
    )


def pixelcnn_parameter_count(model: PixelCnnModel, image_size: int) -> int:
    """Return the trained parameters of the PixelCNN that `model` describes."""
    out_channels = PARAMS_PER_COMPONENT * model.mixture_components
    if model.architecture == "fc":
        return made_parameter_count(image_size, MADE_HIDDEN, out_channels)
    return gated_parameter_count(
        GATED_CHANNELS[model.architecture], GATED_LAYERS, GATED_KERNEL, out_channels
    )
