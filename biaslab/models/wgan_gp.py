"""A Wasserstein GAN with gradient penalty (Gulrajani et al., "Improved Training of
Wasserstein GANs", 2017).

The critic D minimizes  E[D(fake)] - E[D(real)] + lambda * E[(||grad D(x_mix)|| - 1)^2],
where x_mix mixes a real and a fake image with a uniform random weight per
image; the penalty keeps D close to 1-Lipschitz. The generator G minimizes
-E[D(G(z))] with z ~ N(0, I).

The critic works on images scaled to [-1, 1], as in the paper's code
(gan_cifar.py of github.com/igul222/improved_wgan_training): images x in [0, 1]
enter it as 2x - 1, and G's last layer is followed by tanh. The gradient
penalty is taken on that scale too. `sample` maps G's outputs back to [0, 1].
With the quick preset on 32x32 dots, this scaling lowered the share of samples
that the count probe cannot read from 77-80% (sigmoid outputs, a critic fed
[0, 1]) to 64%.

One `training_step(images)` takes `critic_steps` critic updates and then one
generator update. The B real images of the step are split into `critic_steps`
parts of about B / critic_steps images, and each critic update sees one part
against as many fresh fakes, so every real image is used once. The generator
update draws B fakes. So `batch_size` must be at least `critic_steps`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from biaslab.design import Training, WganGpModel
from biaslab.models.base import GenerativeModel, LossTerms
from biaslab.models.networks import build_critic, build_decoder
from biaslab.models.optim import AdamBetas, ScheduledAdam
from biaslab.models.precision import ComputeMode

# Adam's betas in the WGAN-GP paper's experiments; Training.adam_betas overrides them.
WGAN_GP_ADAM_BETAS: AdamBetas = (0.5, 0.9)


def to_critic_scale(images: torch.Tensor) -> torch.Tensor:
    """Map images in [0, 1] to the critic's scale, [-1, 1]."""
    return 2 * images - 1


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Return the mean of (||grad D(x_mix)||_2 - 1)^2 over the batch, differentiable in D."""
    batch_size = real.shape[0]
    weights = torch.rand(batch_size, 1, 1, 1, device=real.device)
    mixed = (weights * real + (1 - weights) * fake).requires_grad_(True)  # (B, 3, H, W)
    scores = critic(mixed)  # (B, 1)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    # The small constant keeps the square root differentiable where a gradient is zero.
    norms = torch.sqrt(gradients.flatten(1).pow(2).sum(dim=1) + 1e-12)  # (B,)
    return (norms - 1).pow(2).mean()


class WganGp(GenerativeModel):
    """A generator and a critic built from one architecture, each trained with its own Adam.

    Loss terms per step, each a mean over the step's critic updates except
    "generator": "wasserstein" (E[D(real)] - E[D(fake)], the critic's estimate
    of the Wasserstein-1 distance), "gradient_penalty" (unweighted), "critic"
    (the critic's loss), "generator" (-E[D(G(z))]) and "loss", which equals
    "critic": the objective whose decrease follows sample quality (the
    WGAN-GP paper, section 5.3).
    """

    def __init__(
        self, config: WganGpModel, image_size: int, training: Training, device: torch.device
    ) -> None:
        if training.batch_size < config.critic_steps:
            raise ValueError(
                f"training.batch_size {training.batch_size} is smaller than model.critic_steps "
                f"{config.critic_steps}; each critic step needs at least one real image, so use "
                f"a batch of at least {config.critic_steps}"
            )
        self.device = device
        self.image_size = image_size
        self.z_dim = config.z_dim
        self.penalty_weight = config.gradient_penalty
        self.critic_steps = config.critic_steps
        self.compute = ComputeMode(device)
        self.generator = self.compute.prepare_module(
            build_decoder(config.architecture, image_size, config.z_dim)
        )
        self.critic = self.compute.prepare_module(build_critic(config.architecture, image_size))
        self.generator_optimizer = ScheduledAdam(
            self.generator.parameters(), training, WGAN_GP_ADAM_BETAS
        )
        self.critic_optimizer = ScheduledAdam(
            self.critic.parameters(), training, WGAN_GP_ADAM_BETAS
        )

    def train(self, mode: bool = True) -> None:
        self.generator.train(mode)
        self.critic.train(mode)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Map (B, Z) latents to (B, 3, H, W) images on the critic's scale, [-1, 1]."""
        return torch.tanh(self.generator(z))

    def training_step(self, images: torch.Tensor) -> LossTerms:
        images = to_critic_scale(self.compute.prepare_images(images))  # (B, 3, H, W) in [-1, 1]
        critic_terms: dict[str, list[torch.Tensor]] = {
            "critic": [],
            "wasserstein": [],
            "gradient_penalty": [],
        }

        # Critic updates, each on its own part of the batch.
        for real in images.tensor_split(self.critic_steps):
            z = torch.randn(real.shape[0], self.z_dim, device=self.device)
            with torch.no_grad(), self.compute.autocast():
                fake = self.generate(z)
            with self.compute.autocast():
                real_scores = self.critic(real)  # (b, 1)
                fake_scores = self.critic(fake)
            wasserstein = real_scores.float().mean() - fake_scores.float().mean()
            # The penalty differentiates twice; it runs in float32 for accuracy.
            penalty = gradient_penalty(self.critic, real, fake.float())
            critic_loss = -wasserstein + self.penalty_weight * penalty
            self.critic_optimizer.minimize(critic_loss)
            critic_terms["critic"].append(critic_loss.detach())
            critic_terms["wasserstein"].append(wasserstein.detach())
            critic_terms["gradient_penalty"].append(penalty.detach())

        # One generator update. The critic's weights need no gradients here.
        self.critic.requires_grad_(False)
        try:
            z = torch.randn(images.shape[0], self.z_dim, device=self.device)
            with self.compute.autocast():
                scores = self.critic(self.generate(z))
            generator_loss = -scores.float().mean()
            self.generator_optimizer.minimize(generator_loss)
        finally:
            self.critic.requires_grad_(True)

        self.critic_optimizer.advance_schedule()
        self.generator_optimizer.advance_schedule()
        terms = {name: torch.stack(values).mean() for name, values in critic_terms.items()}
        return {"loss": terms["critic"], **terms, "generator": generator_loss.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.generator.training
        self.generator.eval()
        try:
            z = torch.randn(n, self.z_dim, generator=generator, device=self.device)
            with self.compute.autocast():
                logits = self.generator(z)  # (n, 3, H, W)
            # (tanh(a) + 1) / 2 equals sigmoid(2a), which stays in [0, 1] in float32.
            return torch.sigmoid(2 * logits.float())
        finally:
            self.generator.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
