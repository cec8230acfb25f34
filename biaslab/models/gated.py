"""A gated PixelCNN with vertical and horizontal stacks and no blind spot.

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves and Kavukcuoglu,
"Conditional Image Generation with PixelCNN Decoders" (2016), section 2.2
and figure 2. The masks are built from padding and kernel shapes rather than
masked weights:

- The vertical stack's k x k convolutions keep only the kernel's rows down to
  the centre row: (k//2 + 1, k) kernels padded k//2 rows on top. Its features
  at row i see input rows <= i.
- The horizontal stack's convolutions keep only the centre row up to the
  centre column: (1, k//2 + 1) kernels padded k//2 columns on the left. Its
  input is the image shifted right by one pixel, so its features at (i, j)
  see pixels (i, < j).
- The vertical stack feeds the horizontal one after a shift down by one row,
  so row i of the horizontal stack receives rows < i of the image.

The output at (i, j) therefore depends on every pixel above it within the
receptive field and on the pixels to its left, never on (i, j) or later.
The mixture likelihood orders the channels within a pixel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for x split into halves a, b along channels."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down, filling the top row with zeros."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right, filling the left column with zeros."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class VerticalConv(nn.Conv2d):
    """A k x k convolution cut to the rows above and at the centre."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        # Not `half`, which would hide nn.Module.half().
        self.reach = kernel_size // 2
        super().__init__(in_channels, out_channels, (self.reach + 1, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.reach, self.reach, self.reach, 0)))


class HorizontalConv(nn.Conv2d):
    """A 1 x k convolution cut to the columns left of and at the centre."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        self.reach = kernel_size // 2
        super().__init__(in_channels, out_channels, (1, self.reach + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.reach, 0, 0, 0)))


class GatedLayer(nn.Module):
    """One gated layer of both stacks, each with a residual connection."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.vertical = VerticalConv(channels, 2 * channels, kernel_size)
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = HorizontalConv(channels, 2 * channels, kernel_size)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)

    def vertical_step(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the next vertical features and the link to the horizontal stack.

        Row i of the link comes from row i - 1 of the vertical pre-activation.
        """
        pre = self.vertical(v)  # (B, 2C, H, W)
        return v + gate(pre), self.vertical_to_horizontal(shift_down(pre))

    def horizontal_step(self, h: torch.Tensor, link: torch.Tensor) -> torch.Tensor:
        return h + self.horizontal_out(gate(self.horizontal(h) + link))

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, link = self.vertical_step(v)
        return v, self.horizontal_step(h, link)


class GatedPixelCnn(nn.Module):
    """Input convolutions, `layers` gated layers and a 1x1 head to the mixture parameters."""

    def __init__(self, channels: int, layers: int, kernel_size: int, out_channels: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size {kernel_size} is invalid; use an odd size >= 3")
        self.vertical_in = VerticalConv(3, channels, kernel_size)
        self.horizontal_in = HorizontalConv(3, channels, kernel_size)
        self.channels = channels
        self.layers = nn.ModuleList(GatedLayer(channels, kernel_size) for _ in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 1),
            nn.ReLU(),
            nn.Conv2d(2 * channels, out_channels, 1),
        )
        # How far left the horizontal stack reaches, counting the shift by one column.
        self.columns_left = (layers + 1) * (kernel_size // 2) + 1

    def gated_layers(self) -> list[GatedLayer]:
        return [cast(GatedLayer, layer) for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) images in [-1, 1] to (B, 10K, H, W) mixture parameters."""
        v = self.vertical_in(x)
        h = self.horizontal_in(shift_right(x))
        for layer in self.gated_layers():
            v, h = layer(v, h)
        return self.head(h)

    def vertical_row(self, conv: VerticalConv, v: torch.Tensor, row: int) -> torch.Tensor:
        """Return row `row` of `conv(v)` as (B, C', 1, W), reading only the rows it needs."""
        reach = conv.reach
        rows = v[:, :, max(0, row - reach) : row + 1]
        # Zero rows above the image, as the full pass pads, and zero columns on both sides.
        rows = F.pad(rows, (reach, reach, reach + 1 - rows.shape[2], 0))
        return F.conv2d(rows, conv.weight, conv.bias)

    def pixel_params(self, x: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield (i, j, (B, 10K) parameters) for each pixel in raster order.

        The caller writes pixel (i, j) of `x` after each yield. The vertical
        stack computes each row once, when the row above is complete, and
        keeps every layer's features. The horizontal stack runs once per pixel
        on a crop just wide enough for its receptive field. So the results
        equal `forward(x)` at (i, j), for about one full pass of the vertical
        stack and a few columns of the horizontal one per pixel.
        """
        batch, _, height, width = x.shape
        layers = self.gated_layers()
        row_layers = [RowLayer(layer) for layer in layers]
        # The input of each vertical convolution: features of the rows done so far.
        features = [x.new_zeros(batch, self.channels, height, width) for _ in layers]
        for i in range(height):
            if i == 0:
                # Row 0 has no rows above: its link is the 1x1 convolution of zeros.
                zeros = x.new_zeros(batch, 2 * self.channels, 1, width)
                links = [layer.vertical_to_horizontal(zeros) for layer in layers]
            else:
                done = i - 1
                v = self.vertical_row(self.vertical_in, x, done)
                links = []
                for index, layer in enumerate(layers):
                    features[index][:, :, done : done + 1] = v
                    pre = self.vertical_row(layer.vertical, features[index], done)
                    links.append(layer.vertical_to_horizontal(pre))
                    v = v + gate(pre)
            # (B, W, 2C) rows, so the horizontal stack below runs as matrix products.
            row_links = [link[:, :, 0].transpose(1, 2) for link in links]
            for j in range(width):
                yield i, j, self.horizontal_params(x, i, j, row_layers, row_links)

    def horizontal_params(
        self,
        x: torch.Tensor,
        i: int,
        j: int,
        row_layers: list[RowLayer],
        row_links: list[torch.Tensor],
    ) -> torch.Tensor:
        """Return the (B, 10K) parameters of pixel (i, j) from the horizontal stack alone.

        Each layer computes only the columns that later layers still need,
        so the crop narrows by the kernel's reach per layer down to column j.
        """
        start = max(0, j - self.columns_left)
        h = self.horizontal_in(shift_right(x[:, :, i : i + 1, start : j + 1]))
        h = h[:, :, 0].transpose(1, 2)  # (B, w, C)
        reach = self.vertical_in.reach
        for index, (layer, link) in enumerate(zip(row_layers, row_links, strict=True)):
            keep = min(h.shape[1], (len(row_layers) - index - 1) * reach + 1)
            h = layer(h, link[:, j + 1 - h.shape[1] : j + 1], keep)
        head = h[:, -1, :, None, None]  # (B, C, 1, 1)
        return self.head(head).flatten(1)


class RowLayer:
    """A `GatedLayer`'s horizontal step on (B, w, C) rows, as matrix products.

    Sampling runs the horizontal stack on a few columns of one row per pixel.
    At those sizes, on the CPU with torch 2.13, matrix products over
    (B, w, C) rows took less time than convolutions over (B, C, 1, w) maps.
    """

    def __init__(self, layer: GatedLayer) -> None:
        conv = layer.horizontal
        self.reach = conv.reach
        # (2C, C, 1, r + 1) -> (2C, (r + 1) * C), kernel position major as in `windows`.
        self.weight = conv.weight[:, :, 0].permute(0, 2, 1).flatten(1)
        self.bias = conv.bias
        self.out_weight = layer.horizontal_out.weight[:, :, 0, 0]
        self.out_bias = layer.horizontal_out.bias

    def __call__(self, h: torch.Tensor, link: torch.Tensor, keep: int) -> torch.Tensor:
        """Return the layer's output at the last `keep` of the w columns of `h`."""
        width = h.shape[1]
        start = width - keep
        padded = F.pad(h, (0, 0, self.reach, 0))  # (B, r + w, C)
        # Output column c reads padded columns c .. c + r.
        windows = torch.cat(
            [padded[:, start + k : start + k + keep] for k in range(self.reach + 1)], dim=2
        )  # (B, keep, (r + 1) * C)
        pre = F.linear(windows, self.weight, self.bias) + link[:, start:]
        return h[:, start:] + F.linear(gate_last(pre), self.out_weight, self.out_bias)


def gate_last(x: torch.Tensor) -> torch.Tensor:
    """`gate` for channels in the last dimension."""
    a, b = x.chunk(2, dim=-1)
    return torch.tanh(a) * torch.sigmoid(b)
