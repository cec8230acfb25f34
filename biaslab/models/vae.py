"""A variational autoencoder with a Gaussian latent and Bernoulli pixels.

The loss is the negative ELBO of Kingma and Welling, "Auto-Encoding Variational
Bayes" (2014): binary cross-entropy summed over pixels plus `beta` times the KL
divergence of the approximate posterior from N(0, I), per image. `beta` = 1 is
the plain VAE; other values weight the KL term as in beta-VAE (Higgins et al.,
2017). With `kl_warmup_steps` the KL weight rises linearly from 0 to `beta`
over the first steps (KL annealing, Bowman et al., "Generating Sentences from
a Continuous Space", 2016).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from biaslab.design import Architecture, Training, VaeModel
from biaslab.models.base import GenerativeModel, LossTerms
from biaslab.models.networks import build_decoder, build_encoder
from biaslab.models.optim import ScheduledAdam
from biaslab.models.precision import ComputeMode


class VaeNetwork(nn.Module):
    """An encoder to the posterior's mean and log-variance, and a decoder to pixel logits."""

    def __init__(self, architecture: Architecture, image_size: int, z_dim: int) -> None:
        super().__init__()
        self.encoder, features = build_encoder(architecture, image_size)
        self.to_mean = nn.Linear(features, z_dim)
        self.to_logvar = nn.Linear(features, z_dim)
        self.decoder = build_decoder(architecture, image_size, z_dim)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map (B, 3, H, W) images to the posterior's mean and log-variance, each (B, Z)."""
        features = self.encoder(images)  # (B, F)
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
    kl_weight: float,
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
    return reconstruction + kl_weight * kl, reconstruction, kl


class Vae(GenerativeModel):
    """A `VaeNetwork` trained with Adam on the negative ELBO, with optional KL annealing.

    Loss terms per step: "reconstruction" (BCE, nats per image), "kl" (nats per
    image) and "loss" = reconstruction + w * kl, the objective minimized, where
    w is the KL weight of that step (`kl_weight`).
    """

    def __init__(
        self, config: VaeModel, image_size: int, training: Training, device: torch.device
    ) -> None:
        self.device = device
        self.image_size = image_size
        self.z_dim = config.z_dim
        self.beta = config.beta
        self.kl_warmup_steps = config.kl_warmup_steps
        self.compute = ComputeMode(device)
        self.network = self.compute.prepare_module(
            VaeNetwork(config.architecture, image_size, config.z_dim)
        )
        self.optimizer = ScheduledAdam(self.network.parameters(), training)
        # Training steps taken: the KL weight depends on it, so it is saved with the weights.
        self.steps_done = 0

    @property
    def kl_weight(self) -> float:
        """The KL term's weight in the next step: beta, or less during the warmup."""
        if self.steps_done >= self.kl_warmup_steps:
            return self.beta
        # The first step weighs 1 / kl_warmup_steps of beta, step kl_warmup_steps all of it.
        return self.beta * (self.steps_done + 1) / self.kl_warmup_steps

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def training_step(self, images: torch.Tensor) -> LossTerms:
        images = self.compute.prepare_images(images)
        with self.compute.autocast():
            logits, mean, logvar = self.network(images)
        # The loss itself is computed in float32.
        loss, reconstruction, kl = vae_loss(logits, images, mean, logvar, self.kl_weight)

        self.optimizer.minimize(loss)
        self.optimizer.advance_schedule()
        self.steps_done += 1
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.network.training
        self.network.eval()
        try:
            z = torch.randn(n, self.z_dim, generator=generator, device=self.device)
            with self.compute.autocast():
                logits = self.network.decode(z)  # (n, 3, H, W)
            return torch.sigmoid(logits.float())
        finally:
            self.network.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = int(state["steps_done"])
