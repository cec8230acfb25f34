"""PixelCNN: an autoregressive model of 8-bit images, pixel by pixel in raster order.

p(x) = prod over pixels p(x_ij | pixels before ij), each factor a discretized
logistic mixture over the pixel's three channels in the order R, G, B (see
`biaslab.models.logistic`). The network is a gated PixelCNN (`conv_small`,
`conv`, `conv_large`) or a MADE (`fc`). Training images in [0, 1] are rounded
to 256 levels first, so the loss is a true negative log-likelihood.

Loss terms: "loss" is the negative log-likelihood in bits per dimension (per
channel of each pixel), the objective that is minimized, and "nats_per_image"
is the same quantity summed over an image in nats.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from biaslab.design import PixelCnnModel, Training
from biaslab.models.base import GenerativeModel, LossTerms
from biaslab.models.gated import GatedPixelCnn
from biaslab.models.logistic import (
    mixture_log_prob,
    params_per_pixel,
    sample_mixture,
    to_bin_centres,
)
from biaslab.models.made import MadeNetwork
from biaslab.models.optim import ScheduledAdam
from biaslab.models.pixelcnn_sizes import (
    GATED_CHANNELS,
    GATED_KERNEL,
    GATED_LAYERS,
    MADE_HIDDEN,
)
from biaslab.models.precision import ComputeMode


def build_network(config: PixelCnnModel, image_size: int) -> MadeNetwork | GatedPixelCnn:
    """Build the network that maps (B, 3, H, W) images to (B, 10K, H, W) mixture parameters."""
    out_channels = params_per_pixel(config.mixture_components)
    if config.architecture == "fc":
        return MadeNetwork(image_size, MADE_HIDDEN, out_channels)
    return GatedPixelCnn(
        GATED_CHANNELS[config.architecture], GATED_LAYERS, GATED_KERNEL, out_channels
    )


def to_pixel_scale(images: torch.Tensor) -> torch.Tensor:
    """Map images in [0, 1] to the 256 bin centres in [-1, 1] that the likelihood models."""
    return to_bin_centres(images.clamp(0.0, 1.0) * 2.0 - 1.0)


class PixelCnn(GenerativeModel):
    """An autoregressive network trained by maximum likelihood with Adam."""

    def __init__(
        self, config: PixelCnnModel, image_size: int, training: Training, device: torch.device
    ) -> None:
        self.device = device
        self.image_size = image_size
        self.components = config.mixture_components
        # TODO: the CUDA path (bf16 autocast, channels-last) has not run on a GPU yet.
        self.compute = ComputeMode(device)
        self.network = build_network(config, image_size)
        self.compute.prepare_module(self.network)
        self.optimizer = ScheduledAdam(self.network.parameters(), training)
        self.dimensions = 3 * image_size * image_size

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def negative_log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        """Return -log p(x) in nats for each of the (B, 3, H, W) images in [0, 1]: (B,)."""
        x = self.compute.prepare_images(to_pixel_scale(images))
        with self.compute.autocast():
            params = self.network(x)  # (B, 10K, H, W)
        # The likelihood runs in float32, because bin masses underflow in bf16.
        return -mixture_log_prob(x, params.float(), self.components).sum(dim=(1, 2))

    def training_step(self, images: torch.Tensor) -> LossTerms:
        nats = self.negative_log_likelihood(images).mean()
        bits_per_dimension = nats / (self.dimensions * math.log(2.0))
        self.optimizer.minimize(bits_per_dimension)
        self.optimizer.advance_schedule()
        return {"loss": bits_per_dimension.detach(), "nats_per_image": nats.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw `n` images pixel by pixel, all n at once: one network pass per pixel."""
        was_training = self.network.training
        self.network.eval()
        try:
            size = self.image_size
            x = torch.zeros(n, 3, size, size, device=self.device)
            x = self.compute.prepare_images(x)
            with self.compute.autocast():
                for i, j, params in self.network.pixel_params(x):  # params (n, 10K)
                    x[:, :, i, j] = sample_mixture(params.float(), self.components, generator)
            return (x + 1.0) / 2.0
        finally:
            self.network.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
