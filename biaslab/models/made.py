"""A masked fully connected autoregressive network over pixels (MADE).

Germain, Gregor, Murray and Larochelle, "MADE: Masked Autoencoder for
Distribution Estimation" (2015). Pixels are ordered row by row. Every unit
gets a degree: pixel p's three inputs have degree p, and a hidden unit of
degree m sees only inputs of degree <= m. Pixel p's outputs see only hidden
units of degree < p, so they depend on pixels 0..p-1 alone. The three channels
of one pixel are ordered by the mixture likelihood (see `logistic`), not here.

Hidden degrees are spread evenly, so with fewer hidden units than pixels some
degrees are missing: pixel p then sees pixels up to the largest hidden degree
below p, not always p - 1. With 512 units that is p - 1 or p - 2 at 32x32,
and up to 8 pixels back at 64x64.

Pixel p's outputs are `PIXEL_FEATURES` masked features plus a per-pixel bias,
turned into its mixture parameters by a small head shared by all pixels. A
masked layer straight to the 10K parameters of every pixel would need about
50 million weights at 32x32.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from biaslab.models.pixelcnn_sizes import PIXEL_FEATURES


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask."""

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


def hidden_degrees(hidden: int, pixels: int) -> torch.Tensor:
    """Spread `hidden` degrees evenly from 0 to below pixels - 1, the degrees that outputs use."""
    return torch.div(torch.arange(hidden) * (pixels - 1), hidden, rounding_mode="floor")


class MadeNetwork(nn.Module):
    """Two masked hidden layers from an image's pixels to each pixel's mixture parameters."""

    def __init__(self, image_size: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.out_channels = out_channels
        pixels = image_size * image_size
        input_degrees = torch.arange(pixels).repeat_interleave(3)  # (3P,): R, G, B of each pixel
        degrees = hidden_degrees(hidden, pixels)  # (H,)
        output_degrees = torch.arange(pixels).repeat_interleave(PIXEL_FEATURES)  # (P * F,)

        self.input_layer = MaskedLinear(
            3 * pixels, hidden, (degrees[:, None] >= input_degrees[None, :]).float()
        )
        self.hidden_layer = MaskedLinear(
            hidden, hidden, (degrees[:, None] >= degrees[None, :]).float()
        )
        self.output_layer = MaskedLinear(
            hidden, pixels * PIXEL_FEATURES, (output_degrees[:, None] > degrees[None, :]).float()
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(PIXEL_FEATURES, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) images in [-1, 1] to (B, 10K, H, W) mixture parameters."""
        batch, size = x.shape[0], self.image_size
        flat = x.permute(0, 2, 3, 1).reshape(batch, -1)  # (B, 3P), pixel-major
        hidden = F.relu(self.hidden_layer(F.relu(self.input_layer(flat))))
        features = self.output_layer(hidden).reshape(batch, size * size, PIXEL_FEATURES)
        params = self.head(features)  # (B, P, 10K)
        return params.reshape(batch, size, size, self.out_channels).permute(0, 3, 1, 2)

    def pixel_params(self, x: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield (i, j, (B, 10K) parameters) for each pixel in raster order.

        The caller writes pixel (i, j) of `x` after each yield. The input
        layer's pre-activation is updated with that one pixel instead of being
        recomputed, and only pixel (i, j)'s rows of the output layer are used.
        """
        size = self.image_size
        input_weight = self.input_layer.masked_weight()  # (H, 3P)
        output_weight = self.output_layer.masked_weight()  # (P * F, H)
        output_bias = self.output_layer.bias
        hidden_in = self.input_layer.bias.expand(x.shape[0], -1)  # (B, H)
        for pixel in range(size * size):
            i, j = divmod(pixel, size)
            hidden = F.relu(self.hidden_layer(F.relu(hidden_in)))
            rows = slice(pixel * PIXEL_FEATURES, (pixel + 1) * PIXEL_FEATURES)
            features = F.linear(hidden, output_weight[rows], output_bias[rows])  # (B, F)
            yield i, j, self.head(features)
            columns = slice(3 * pixel, 3 * pixel + 3)
            hidden_in = hidden_in + x[:, :, i, j] @ input_weight[:, columns].T
