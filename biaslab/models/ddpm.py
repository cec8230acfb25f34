"""DDPM: a denoising diffusion model trained to predict the noise added to an image.

Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models" (2020).
Images in [0, 1] are scaled to x0 in [-1, 1]. Training draws a step t and
noise eps and minimizes ||eps - eps_theta(x_t, t)||^2, with
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (the paper's L_simple, averaged
over pixels). The noise schedule is linear (the paper's, rescaled to the
schedule's length as in Nichol and Dhariwal, "Improved Denoising Diffusion
Probabilistic Models", 2021) or cosine (Nichol and Dhariwal, section 3.2).

With `min_snr_gamma`, each image's loss is weighted by min(SNR_t, gamma) / SNR_t,
where SNR_t = abar_t / (1 - abar_t) (Hang et al., "Efficient Diffusion Training
via Min-SNR Weighting Strategy", ICCV 2023). Steps with little noise then weigh
less: the paper finds that their gradients conflict with those of noisier steps.

Sampling runs DDIM with eta = 0 (Song, Meng and Ermon, "Denoising Diffusion
Implicit Models", 2021) over `sampling_steps` evenly spaced steps, or the
full ancestral chain of the DDPM paper when `sampling_steps` is None. Each
step clips its estimate of x0 to [-1, 1].

Samples come from an exponential moving average of the denoiser's weights, as
in the DDPM paper. The decay after n updates is min(ema_decay, (1 + n) / (10 + n)),
so the average follows the weights closely early in training and averages over
about 1 / (1 - ema_decay) steps late in it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from biaslab.design import DdpmModel, Training
from biaslab.models.base import GenerativeModel, LossTerms
from biaslab.models.ddpm_sizes import MLP_BLOCKS, MLP_WIDTH, UNET_CHANNELS
from biaslab.models.optim import ScheduledAdam
from biaslab.models.precision import ComputeMode
from biaslab.models.unet import MlpDenoiser, UNet

# Beta at the first and last step of the DDPM paper's linear schedule of 1,000 steps.
LINEAR_BETA_START = 1e-4
LINEAR_BETA_END = 0.02
# The cosine schedule's offset s and its cap on beta (Nichol and Dhariwal, section 3.2).
# The linear schedule takes the same cap, because rescaled to 20 steps or fewer its
# last betas reach 1 or more, and a beta of 1 or more makes alpha-bar 0 or negative.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def noise_schedule(kind: str, steps: int) -> torch.Tensor:
    """Return the (steps,) betas of the linear or cosine schedule, in float64."""
    if kind == "linear":
        scale = 1000.0 / steps
        betas = torch.linspace(
            scale * LINEAR_BETA_START, scale * LINEAR_BETA_END, steps, dtype=torch.float64
        )
        return betas.clamp(max=MAX_BETA)
    if kind == "cosine":
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        alpha_bar = torch.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"noise schedule {kind!r} is unknown; use 'linear' or 'cosine'")


def ddim_timesteps(diffusion_steps: int, sampling_steps: int) -> list[int]:
    """Return `sampling_steps` steps spread evenly over 0..diffusion_steps-1, in increasing order.

    The last step of the schedule is always included, and `sampling_steps`
    equal to `diffusion_steps` gives every step.
    """
    if not 1 <= sampling_steps <= diffusion_steps:
        raise ValueError(
            f"sampling_steps {sampling_steps} is invalid; use 1 to diffusion_steps "
            f"{diffusion_steps}"
        )
    if sampling_steps == 1:
        return [diffusion_steps - 1]
    spacing = (diffusion_steps - 1) / (sampling_steps - 1)
    return [round(index * spacing) for index in range(sampling_steps)]


def build_denoiser(config: DdpmModel, image_size: int) -> UNet | MlpDenoiser:
    if config.architecture == "fc":
        return MlpDenoiser(image_size, MLP_WIDTH, MLP_BLOCKS)
    return UNet(UNET_CHANNELS[config.architecture], image_size)


class Ddpm(GenerativeModel):
    """A noise-predicting denoiser trained with Adam on the simple DDPM loss."""

    def __init__(
        self, config: DdpmModel, image_size: int, training: Training, device: torch.device
    ) -> None:
        self.device = device
        self.image_size = image_size
        self.diffusion_steps = config.diffusion_steps
        self.sampling_steps = config.sampling_steps
        # TODO: the CUDA path (bf16 autocast, channels-last) has not run on a GPU yet.
        self.compute = ComputeMode(device)
        self.denoiser = build_denoiser(config, image_size)
        self.compute.prepare_module(self.denoiser)
        self.optimizer = ScheduledAdam(self.denoiser.parameters(), training)
        self.ema_decay = config.ema_decay
        self.averaged = self._new_average()

        # The schedule is computed in float64 and kept in float32 on the device.
        betas = noise_schedule(config.noise_schedule, config.diffusion_steps)
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        alpha_bar_previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # q(x_{t-1} | x_t, x0): its variance and the weights of x0 and x_t in its mean
        # (the DDPM paper, equation 7).
        posterior_variance = betas * (1 - alpha_bar_previous) / (1 - alpha_bar)
        self.alpha_bar = alpha_bar.float().to(device)
        # gamma / max(SNR, gamma) is min(SNR, gamma) / SNR, and 1 where SNR is 0.
        self.loss_weight: torch.Tensor | None = None
        if config.min_snr_gamma is not None:
            snr = alpha_bar / (1 - alpha_bar)
            gamma = config.min_snr_gamma
            self.loss_weight = (gamma / snr.clamp(min=gamma)).float().to(device)
        self.posterior_variance = posterior_variance.float().to(device)
        self.posterior_x0 = (betas * alpha_bar_previous.sqrt() / (1 - alpha_bar)).float().to(device)
        self.posterior_xt = (
            ((1 - alpha_bar_previous) * (1 - betas).sqrt() / (1 - alpha_bar)).float().to(device)
        )

    def train(self, mode: bool = True) -> None:
        self.denoiser.train(mode)

    def _new_average(self) -> AveragedModel:
        """Return a moving average that starts from the denoiser's current weights."""
        return AveragedModel(self.denoiser, multi_avg_fn=self._update_average)

    def _update_average(
        self,
        averaged: tuple[torch.Tensor, ...] | list[torch.Tensor],
        current: tuple[torch.Tensor, ...] | list[torch.Tensor],
        updates: torch.Tensor | int,
    ) -> None:
        """Move the averaged weights towards the current ones after `updates` earlier updates."""
        n = int(updates)
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        for average, weight in zip(averaged, current, strict=True):
            average.lerp_(weight, 1.0 - decay)

    def predict_noise(
        self, x: torch.Tensor, t: torch.Tensor, network: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Return the noise estimate in float32 for (B, 3, H, W) x at (B,) steps t.

        `network` defaults to the denoiser in training; sampling passes the averaged one.
        """
        network = self.denoiser if network is None else network
        with self.compute.autocast():
            return network(self.compute.prepare_images(x), t).float()

    def training_step(self, images: torch.Tensor) -> LossTerms:
        x0 = images * 2.0 - 1.0  # (B, 3, H, W) in [-1, 1]
        batch = x0.shape[0]
        t = torch.randint(0, self.diffusion_steps, (batch,), device=self.device)
        noise = torch.randn_like(x0)
        alpha_bar = self.alpha_bar[t][:, None, None, None]
        x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        if self.loss_weight is None:
            loss = F.mse_loss(self.predict_noise(x_t, t), noise)
        else:
            error = (self.predict_noise(x_t, t) - noise).square().mean(dim=(1, 2, 3))
            loss = (self.loss_weight[t] * error).mean()
        self.optimizer.minimize(loss)
        self.optimizer.advance_schedule()
        self.averaged.update_parameters(self.denoiser)
        return {"loss": loss.detach()}

    def estimate_x0(
        self, x_t: torch.Tensor, t: int, alpha_bar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the clipped estimate of x0 from x_t, and the noise consistent with it."""
        steps = torch.full((x_t.shape[0],), t, device=self.device, dtype=torch.long)
        noise = self.predict_noise(x_t, steps, self.averaged.module)
        x0 = ((x_t - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()).clamp(-1.0, 1.0)
        return x0, (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    def sample_ddim(self, x: torch.Tensor, sampling_steps: int) -> torch.Tensor:
        """Run DDIM with eta = 0 from pure noise `x`: deterministic given `x`."""
        timesteps = ddim_timesteps(self.diffusion_steps, sampling_steps)
        one = torch.ones((), device=self.device)
        for index in reversed(range(len(timesteps))):
            t = timesteps[index]
            alpha_bar = self.alpha_bar[t]
            alpha_bar_next = self.alpha_bar[timesteps[index - 1]] if index > 0 else one
            x0, noise = self.estimate_x0(x, t, alpha_bar)
            x = alpha_bar_next.sqrt() * x0 + (1 - alpha_bar_next).sqrt() * noise
        return x

    def sample_ancestral(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Run the DDPM chain through every step from pure noise `x`."""
        for t in reversed(range(self.diffusion_steps)):
            x0, _ = self.estimate_x0(x, t, self.alpha_bar[t])
            mean = self.posterior_x0[t] * x0 + self.posterior_xt[t] * x
            if t == 0:
                return mean
            z = torch.randn(x.shape, generator=generator, device=self.device)
            x = mean + self.posterior_variance[t].sqrt() * z
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was_training = self.denoiser.training
        self.denoiser.eval()
        self.averaged.eval()
        try:
            size = self.image_size
            x = torch.randn(n, 3, size, size, generator=generator, device=self.device)
            if self.sampling_steps is None:
                x = self.sample_ancestral(x, generator)
            else:
                x = self.sample_ddim(x, self.sampling_steps)
            return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
        finally:
            self.denoiser.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "denoiser": self.denoiser.state_dict(),
            "averaged": self.averaged.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.denoiser.load_state_dict(state["denoiser"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "averaged" in state:
            self.averaged.load_state_dict(state["averaged"])
        else:
            # Checkpoints written before the model kept an average start one from their weights.
            self.averaged = self._new_average()
