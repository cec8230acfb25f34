"""Layer plans of the four architectures, and parameter counts computed from them.

A plan is a tuple of layers that `biaslab.models.networks` turns into torch
modules. Plans are plain data, so this module does not import torch: the API
reports parameter counts without loading it.

- `fc`: fully connected layers of FC_HIDDEN units.
- `conv`: 4x4 convolutions with stride 2 that halve the image down to a 4x4 map.
  The first level has 32 channels and each further level twice as many; the
  decoder mirrors the encoder with transposed convolutions.
- `conv_small` and `conv_large`: the same layers with 22 and 72 channels at the
  first level. Convolution weights grow with the square of the width but the
  dense layers next to the latent grow only linearly, so the ratio to `conv`
  depends on `z_dim`: from 0.49 to 0.61 (small) and from 3.2 to 4.8 (large)
  of `conv`'s parameters for the VAE and WGAN-GP at 32x32 and 64x64 with
  z_dim 32 to 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from biaslab.design import Architecture, DdpmModel, Model, PixelCnnModel, VaeModel, WganGpModel

# The conv encoders halve the image until the feature map is BOTTOM_SIZE wide.
BOTTOM_SIZE = 4
FIRST_LEVEL_CHANNELS: dict[Architecture, int] = {"conv_small": 22, "conv": 32, "conv_large": 72}
FC_HIDDEN = (512, 512)
IMAGE_CHANNELS = 3


@dataclass(frozen=True)
class Dense:
    in_features: int
    out_features: int

    @property
    def parameters(self) -> int:
        return self.in_features * self.out_features + self.out_features


@dataclass(frozen=True)
class Conv:
    """A 4x4 convolution with stride 2 and padding 1 (halves H and W), or its transpose."""

    in_channels: int
    out_channels: int
    transposed: bool = False

    @property
    def parameters(self) -> int:
        return 16 * self.in_channels * self.out_channels + self.out_channels


@dataclass(frozen=True)
class Flatten:
    """(B, C, H, W) to (B, C * H * W)."""


@dataclass(frozen=True)
class Unflatten:
    """(B, channels * size * size) to (B, channels, size, size)."""

    channels: int
    size: int


@dataclass(frozen=True)
class Activation:
    """The network's nonlinearity; the builder chooses which (ReLU, LeakyReLU)."""


Layer = Dense | Conv | Flatten | Unflatten | Activation
Plan = tuple[Layer, ...]


def plan_parameters(plan: Plan) -> int:
    """Return the number of weights and biases in a plan."""
    return sum(layer.parameters for layer in plan if isinstance(layer, Dense | Conv))


def level_channels(architecture: Architecture, image_size: int) -> list[int]:
    """Return the channel count of each conv feature map, from image_size/2 down to 4x4."""
    if architecture == "fc":
        raise ValueError("architecture 'fc' has no convolution levels")
    if image_size < 2 * BOTTOM_SIZE or image_size & (image_size - 1):
        raise ValueError(f"image_size {image_size} is not supported: use a power of two >= 8")
    levels = (image_size // BOTTOM_SIZE).bit_length() - 1
    first = FIRST_LEVEL_CHANNELS[architecture]
    return [first * 2**level for level in range(levels)]


def encoder_plan(architecture: Architecture, image_size: int) -> tuple[Plan, int]:
    """Return the plan from (B, 3, H, W) images to (B, F) features, and F."""
    layers: list[Layer] = []
    if architecture == "fc":
        in_features = IMAGE_CHANNELS * image_size * image_size
        layers.append(Flatten())
        for width in FC_HIDDEN:
            layers += [Dense(in_features, width), Activation()]
            in_features = width
        return tuple(layers), in_features

    in_channels = IMAGE_CHANNELS
    for out_channels in level_channels(architecture, image_size):
        layers += [Conv(in_channels, out_channels), Activation()]
        in_channels = out_channels
    layers.append(Flatten())
    return tuple(layers), in_channels * BOTTOM_SIZE * BOTTOM_SIZE


def decoder_plan(architecture: Architecture, image_size: int, z_dim: int) -> Plan:
    """Return the plan from (B, Z) latents to (B, 3, H, W) logits, with no final activation."""
    layers: list[Layer] = []
    if architecture == "fc":
        in_features = z_dim
        for width in FC_HIDDEN:
            layers += [Dense(in_features, width), Activation()]
            in_features = width
        layers += [
            Dense(in_features, IMAGE_CHANNELS * image_size * image_size),
            Unflatten(IMAGE_CHANNELS, image_size),
        ]
        return tuple(layers)

    # The mirror image of the encoder: each transposed convolution doubles H and W.
    channels = level_channels(architecture, image_size)[::-1]
    layers += [
        Dense(z_dim, channels[0] * BOTTOM_SIZE * BOTTOM_SIZE),
        Activation(),
        Unflatten(channels[0], BOTTOM_SIZE),
    ]
    for in_channels, out_channels in zip(channels, channels[1:], strict=False):
        layers += [Conv(in_channels, out_channels, transposed=True), Activation()]
    layers.append(Conv(channels[-1], IMAGE_CHANNELS, transposed=True))
    return tuple(layers)


def critic_plan(architecture: Architecture, image_size: int) -> Plan:
    """Return the plan from (B, 3, H, W) images to (B, 1) critic scores."""
    body, features = encoder_plan(architecture, image_size)
    return (*body, Dense(features, 1))


def parameter_count(model: Model, image_size: int) -> int:
    """Return the number of trained parameters of `model` for images of `image_size`.

    Computed from the layer plans without building any network, so it costs
    microseconds and needs no torch.
    """
    match model:
        case VaeModel():
            encoder, features = encoder_plan(model.architecture, image_size)
            heads = 2 * Dense(features, model.z_dim).parameters  # mean and log-variance
            decoder = decoder_plan(model.architecture, image_size, model.z_dim)
            return plan_parameters(encoder) + heads + plan_parameters(decoder)
        case WganGpModel():
            critic = critic_plan(model.architecture, image_size)
            generator = decoder_plan(model.architecture, image_size, model.z_dim)
            return plan_parameters(critic) + plan_parameters(generator)
        case PixelCnnModel():
            from biaslab.models.pixelcnn_sizes import pixelcnn_parameter_count

            return pixelcnn_parameter_count(model, image_size)
        case DdpmModel():
            from biaslab.models.ddpm_sizes import ddpm_parameter_count

            return ddpm_parameter_count(model, image_size)
