"""Model designs: which generative model a run trains, with the limits of its settings."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator

from biaslab.design.base import Strict

# `conv_small` has about half the parameters of `conv`, and `conv_large` about four times.
Architecture = Literal["fc", "conv_small", "conv", "conv_large"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)


class VaeModel(Strict):
    """A variational autoencoder with a Gaussian latent and a sigmoid decoder."""

    kind: Literal["vae"] = "vae"
    architecture: Architecture = "conv"
    z_dim: int = Field(default=32, ge=2, le=512, title="Latent dimension")
    beta: float = Field(default=1.0, ge=0, le=100, description="Weight of the KL term.")
    kl_warmup_steps: int = Field(
        default=0,
        title="KL warmup steps",
        ge=0,
        le=1_000_000,
        description="Steps over which the KL weight rises from 0 to beta; 0 turns annealing off.",
    )


class WganGpModel(Strict):
    """A Wasserstein GAN whose critic is kept 1-Lipschitz by a gradient penalty."""

    kind: Literal["wgan_gp"] = "wgan_gp"
    architecture: Architecture = "conv"
    z_dim: int = Field(default=64, ge=2, le=512, title="Latent dimension")
    gradient_penalty: float = Field(
        default=10.0, ge=0, le=1000, description="Weight of the gradient penalty."
    )
    critic_steps: int = Field(
        default=2, ge=1, le=20, description="Critic updates per generator update."
    )


class PixelCnnModel(Strict):
    """An autoregressive model with masked convolutions and a logistic mixture likelihood."""

    kind: Literal["pixelcnn"] = "pixelcnn"
    architecture: Architecture = "conv"
    mixture_components: int = Field(
        default=5, ge=1, le=20, description="Logistic components per pixel."
    )


class DdpmModel(Strict):
    """A denoising diffusion model with a U-Net denoiser."""

    kind: Literal["ddpm"] = "ddpm"
    architecture: Architecture = "conv"
    diffusion_steps: int = Field(
        default=1000, ge=10, le=4000, description="Length of the noise schedule."
    )
    noise_schedule: Literal["linear", "cosine"] = Field(
        default="linear",
        description="Betas that rise linearly, or that follow a cosine curve of alpha-bar.",
    )
    sampling_steps: int | None = Field(
        default=50,
        ge=1,
        le=4000,
        description="DDIM steps for snapshot samples, or the full schedule when empty (null).",
    )
    ema_decay: float = Field(
        default=0.9999,
        title="EMA decay",
        ge=0,
        lt=1,
        description=(
            "Decay of the moving average of the denoiser's weights that samples come from; "
            "0 samples from the trained weights."
        ),
    )

    min_snr_gamma: float | None = Field(
        default=None,
        title="Min-SNR gamma",
        gt=0,
        le=1000,
        description=(
            "Weights each time step's loss by min(SNR, gamma) / SNR, so that steps with "
            "little noise weigh less. When empty (null), every step weighs the same, as in the "
            "DDPM paper."
        ),
    )

    @field_validator("sampling_steps")
    @classmethod
    def _sampling_within_schedule(
        cls, sampling_steps: int | None, info: ValidationInfo
    ) -> int | None:
        diffusion_steps = info.data.get("diffusion_steps")
        if (
            sampling_steps is not None
            and diffusion_steps is not None
            and sampling_steps > diffusion_steps
        ):
            raise ValueError(
                f"sampling_steps {sampling_steps} is larger than diffusion_steps "
                f"{diffusion_steps}; use at most the length of the schedule"
            )
        return sampling_steps


Model = Annotated[VaeModel | WganGpModel | PixelCnnModel | DdpmModel, Field(discriminator="kind")]
MODEL_KINDS: tuple[str, ...] = ("vae", "wgan_gp", "pixelcnn", "ddpm")
