"""Torch modules built from the layer plans of `biaslab.models.architectures`.

The VAE's encoder and decoder and the WGAN-GP's critic and generator come from
the same plans, so an architecture means the same layers in every model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from biaslab.design import Architecture
from biaslab.models.architectures import (
    Activation,
    Conv,
    Dense,
    Flatten,
    Plan,
    Unflatten,
    critic_plan,
    decoder_plan,
    encoder_plan,
)

ActivationFactory = Callable[[], nn.Module]


def build(plan: Plan, activation: ActivationFactory = nn.ReLU) -> nn.Sequential:
    """Turn a layer plan into an `nn.Sequential`, in the plan's order."""
    modules: list[nn.Module] = []
    for layer in plan:
        match layer:
            case Dense(in_features, out_features):
                modules.append(nn.Linear(in_features, out_features))
            case Conv(in_channels, out_channels, transposed=False):
                modules.append(nn.Conv2d(in_channels, out_channels, 4, 2, 1))
            case Conv(in_channels, out_channels, transposed=True):
                modules.append(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1))
            case Flatten():
                modules.append(nn.Flatten())
            case Unflatten(channels, size):
                modules.append(nn.Unflatten(1, (channels, size, size)))
            case Activation():
                modules.append(activation())
    return nn.Sequential(*modules)


def build_encoder(
    architecture: Architecture, image_size: int, activation: ActivationFactory = nn.ReLU
) -> tuple[nn.Sequential, int]:
    """Return a network from (B, 3, H, W) images to (B, F) features, and F."""
    plan, features = encoder_plan(architecture, image_size)
    return build(plan, activation), features


def build_decoder(
    architecture: Architecture,
    image_size: int,
    z_dim: int,
    activation: ActivationFactory = nn.ReLU,
) -> nn.Sequential:
    """Return a network from (B, Z) latents to (B, 3, H, W) logits."""
    return build(decoder_plan(architecture, image_size, z_dim), activation)


def leaky_relu() -> nn.Module:
    # The slope of 0.2 is the usual choice for GAN critics since DCGAN (Radford et al., 2016).
    return nn.LeakyReLU(0.2)


def build_critic(architecture: Architecture, image_size: int) -> nn.Sequential:
    """Return a network from (B, 3, H, W) images to (B, 1) scores, without normalization.

    A gradient penalty is taken per image, so the critic must not mix images
    of a batch the way batch normalization does (Gulrajani et al., 2017, section 4).
    """
    return build(critic_plan(architecture, image_size), leaky_relu)
