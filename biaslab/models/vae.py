"""A convolutional variational autoencoder with a Gaussian latent and Bernoulli pixels.

The loss is the negative ELBO of Kingma and Welling, "Auto-Encoding Variational
Bayes" (2014): binary cross-entropy summed over pixels plus `beta` times the KL
divergence of the approximate posterior from N(0, I), per image. `beta` = 1 is
the plain VAE; other values weight the KL term as in beta-VAE (Higgins et al.,
2017).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from biaslab.design import VaeModel
from biaslab.models.base import GenerativeModel, LossTerms

# The encoder halves the image down to a 4x4 feature map, and the decoder
# doubles it back up. The first level has BASE_CHANNELS channels and each
# further level twice as many.
BOTTOM_SIZE = 4
BASE_CHANNELS = 32


def level_channels(image_size: int) -> list[int]:
    """Return the channel count of each feature map from image_size/2 down to 4x4."""
    if image_size < 2 * BOTTOM_SIZE or image_size & (image_size - 1):
        raise ValueError(f"image_size {image_size} is not supported: use a power of two >= 8")
    levels = (image_size // BOTTOM_SIZE).bit_length() - 1
    return [BASE_CHANNELS * 2**level for level in range(levels)]


class VaeNetwork(nn.Module):
    """Strided-convolution encoder and transposed-convolution decoder."""

    def __init__(self, image_size: int, z_dim: int) -> None:
        super().__init__()
        channels = level_channels(image_size)
        bottom_features = channels[-1] * BOTTOM_SIZE * BOTTOM_SIZE

        # Each 4x4 convolution with stride 2 and padding 1 halves H and W.
        encoder: list[nn.Module] = []
        in_channels = 3
        for out_channels in channels:
            encoder += [nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.ReLU()]
            in_channels = out_channels
        encoder.append(nn.Flatten())
        self.encoder = nn.Sequential(*encoder)
        self.to_mean = nn.Linear(bottom_features, z_dim)
        self.to_logvar = nn.Linear(bottom_features, z_dim)

        # The mirror image: each 4x4 transposed convolution with stride 2 doubles
        # H and W. The last one emits logits, so there is no activation after it.
        decoder: list[nn.Module] = [
            nn.Linear(z_dim, bottom_features),
            nn.ReLU(),
            nn.Unflatten(1, (channels[-1], BOTTOM_SIZE, BOTTOM_SIZE)),
        ]
        for in_channels, out_channels in pairwise(channels[::-1]):
            decoder += [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), nn.ReLU()]
        decoder.append(nn.ConvTranspose2d(channels[0], 3, 4, 2, 1))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map (B, 3, H, W) images to the posterior's mean and log-variance, each (B, Z)."""
        features = self.encoder(images)  # (B, C * 4 * 4)
        return self.to_mean(features), self.to_logvar(features)

    def reparameterize(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Draw z ~ N(mean, exp(logvar)) as mean + sigma * eps, so gradients reach both."""
        eps = torch.randn_like(mean)
        return mean + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map (B, Z) latents to (B, 3, H, W) logits. Their sigmoid is each pixel's mean."""
        return self.decoder(z)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(images)
        z = self.reparameterize(mean, logvar)
        return self.decode(z), mean, logvar


def vae_loss(
    logits: torch.Tensor,
    images: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (loss, reconstruction, kl), each summed over an image and averaged over the batch."""
    batch_size = images.shape[0]
    # BCE on logits is the numerically stable form of BCE on sigmoid outputs.
    reconstruction = (
        F.binary_cross_entropy_with_logits(logits.float(), images, reduction="sum") / batch_size
    )
    # KL(N(mean, sigma^2) || N(0, I)) in closed form (Kingma and Welling, appendix B).
    mean, logvar = mean.float(), logvar.float()
    kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp()) / batch_size
    return reconstruction + beta * kl, reconstruction, kl


class ConvVae(GenerativeModel):
    """A `VaeNetwork` trained with Adam on the negative ELBO."""

    def __init__(
        self, config: VaeModel, image_size: int, learning_rate: float, device: torch.device
    ) -> None:
        self.device = device
        self.image_size = image_size
        self.z_dim = config.z_dim
        self.beta = config.beta
        self.network = VaeNetwork(image_size, config.z_dim).to(device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=learning_rate)
        # bf16 autocast on GPUs for speed. The loss itself is computed in float32.
        # NOTE: no GPU was available, so this CUDA path has not been run yet.
        self.use_autocast = device.type == "cuda"

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def training_step(self, images: torch.Tensor) -> LossTerms:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_autocast):
            logits, mean, logvar = self.network(images)
        loss, reconstruction, kl = vae_loss(logits, images, mean, logvar, self.beta)

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.network.training
        self.network.eval()
        try:
            z = torch.randn(n, self.z_dim, generator=generator, device=self.device)
            return torch.sigmoid(self.network.decode(z))  # (n, 3, H, W)
        finally:
            self.network.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
