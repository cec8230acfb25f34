"""The discretized logistic mixture likelihood of PixelCNN++ for 8-bit RGB pixels.

Salimans, Karpathy, Chen and Kingma, "PixelCNN++: Improving the PixelCNN with
Discretized Logistic Mixture Likelihood and Other Modifications" (2017),
section 2.1-2.2. Pixel values v in 0..255 are scaled to x = 2v/255 - 1 in
[-1, 1], so each of the 256 bins is 2/255 wide. A pixel's three channels share
one mixture component. Within a component the red channel has its own mean,
green's mean moves linearly with red's value and blue's with red's and
green's, so one network output per pixel models the channels in the order R,
G, B.

A pixel's parameters are 10 * K numbers, laid out along dim 1 as
[K mixture logits | 3K means | 3K log-scales | 3K coefficients], each group of
3K ordered channel-major (R's K values first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from biaslab.models.pixelcnn_sizes import PARAMS_PER_COMPONENT

# Half the width of a bin in [-1, 1].
HALF_BIN = 1.0 / 255.0
# Log-scales below this make the density a spike that cdf differences cannot resolve.
MIN_LOG_SCALE = -7.0


def params_per_pixel(components: int) -> int:
    """Return how many numbers describe one pixel's mixture of `components` logistics."""
    return PARAMS_PER_COMPONENT * components


@dataclass(frozen=True)
class LogisticMixture:
    """A mixture's parameters split by role; each tensor ends in the spatial dims (...)."""

    logits: torch.Tensor  # (B, K, ...)
    means: torch.Tensor  # (B, 3, K, ...)
    log_scales: torch.Tensor  # (B, 3, K, ...)
    coefficients: torch.Tensor  # (B, 3, K, ...): alpha (G on R), beta (B on R), gamma (B on G)


def split_params(params: torch.Tensor, components: int) -> LogisticMixture:
    """Split (B, 10K, ...) network outputs into the mixture's parameters."""
    expected = params_per_pixel(components)
    if params.shape[1] != expected:
        raise ValueError(
            f"params have {params.shape[1]} channels; {components} components need {expected}"
        )
    batch, spatial = params.shape[0], params.shape[2:]
    logits = params[:, :components]
    rest = params[:, components:].reshape(batch, 3, 3, components, *spatial)
    means, log_scales, coefficients = rest.unbind(1)
    return LogisticMixture(
        logits=logits,
        means=means,
        log_scales=log_scales.clamp(min=MIN_LOG_SCALE),
        coefficients=torch.tanh(coefficients),
    )


def conditional_means(mixture: LogisticMixture, x: torch.Tensor) -> torch.Tensor:
    """Return each channel's mean given the channels before it: (B, 3, K, ...).

    `x` is (B, 3, ...) in [-1, 1]. Green's mean uses red's value and blue's
    uses red's and green's, never a channel's own value or a later one.
    """
    red, green = x[:, 0:1], x[:, 1:2]  # (B, 1, ...) broadcast over K
    alpha, beta, gamma = mixture.coefficients.unbind(1)  # each (B, K, ...)
    means_r, means_g, means_b = mixture.means.unbind(1)
    return torch.stack(
        [means_r, means_g + alpha * red, means_b + beta * red + gamma * green], dim=1
    )


def channel_log_probs(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Return log P(bin of x) under one discretized logistic, elementwise.

    The lowest bin takes all mass below it and the highest all mass above it,
    so the 256 bins of one logistic sum to 1.
    """
    centered = x - mean
    inverse_scale = torch.exp(-log_scale)
    upper = inverse_scale * (centered + HALF_BIN)
    lower = inverse_scale * (centered - HALF_BIN)
    # log sigmoid(upper) for the lowest bin and log(1 - sigmoid(lower)) for the highest.
    log_cdf_upper = upper - F.softplus(upper)
    log_survival_lower = -F.softplus(lower)
    bin_mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    # Where the bin's mass underflows, the density at its centre times the bin
    # width 2/255 is the better estimate (PixelCNN++ reference code).
    middle = inverse_scale * centered
    log_density_middle = middle - log_scale - 2.0 * F.softplus(middle)
    log_mass_interior = torch.where(
        bin_mass > 1e-5,
        torch.log(bin_mass.clamp(min=1e-12)),
        log_density_middle - math.log(127.5),
    )
    return torch.where(
        x < -0.999,
        log_cdf_upper,
        torch.where(x > 0.999, log_survival_lower, log_mass_interior),
    )


def mixture_log_prob(x: torch.Tensor, params: torch.Tensor, components: int) -> torch.Tensor:
    """Return log p(x) per pixel in nats: (B, ...) for x (B, 3, ...) in [-1, 1].

    `x` must lie on the 256 bin centres. Compute in float32: the bin masses
    of sharp components underflow in bfloat16.
    """
    mixture = split_params(params, components)
    x_per_component = x.unsqueeze(2)  # (B, 3, 1, ...)
    means = conditional_means(mixture, x)
    log_probs = channel_log_probs(x_per_component, means, mixture.log_scales)  # (B, 3, K, ...)
    joint = log_probs.sum(dim=1) + F.log_softmax(mixture.logits, dim=1)  # (B, K, ...)
    return torch.logsumexp(joint, dim=1)


def to_bin_centres(x: torch.Tensor) -> torch.Tensor:
    """Round values in [-1, 1] (or beyond) to the nearest of the 256 bin centres."""
    levels = torch.round((x + 1.0) * 127.5).clamp(0, 255)
    return levels / 127.5 - 1.0


def sample_mixture(
    params: torch.Tensor, components: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw pixel values on the bin centres: (B, 3, ...) from (B, 10K, ...) parameters.

    One component per pixel, then red, then green given red, then blue given
    both, as in the likelihood.
    """
    mixture = split_params(params, components)
    device, dtype = params.device, params.dtype

    # Pick a component by the Gumbel-max trick: argmax of logits plus Gumbel noise.
    uniform = torch.rand(
        mixture.logits.shape, generator=generator, device=device, dtype=dtype
    ).clamp(1e-5, 1.0 - 1e-5)
    chosen = torch.argmax(mixture.logits - torch.log(-torch.log(uniform)), dim=1)  # (B, ...)
    index = chosen.unsqueeze(1).unsqueeze(2).expand_as(mixture.means[:, :, :1])  # (B, 3, 1, ...)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.gather(2, index).squeeze(2)  # (B, 3, ...)

    means, log_scales, coefficients = (
        pick(mixture.means),
        pick(mixture.log_scales),
        pick(mixture.coefficients),
    )

    # Logistic noise by inverting its cdf: log(u) - log(1 - u).
    uniform = torch.rand(means.shape, generator=generator, device=device, dtype=dtype).clamp(
        1e-5, 1.0 - 1e-5
    )
    noise = torch.exp(log_scales) * (torch.log(uniform) - torch.log1p(-uniform))
    red = to_bin_centres(means[:, 0] + noise[:, 0])
    green = to_bin_centres(means[:, 1] + coefficients[:, 0] * red + noise[:, 1])
    blue = to_bin_centres(
        means[:, 2] + coefficients[:, 1] * red + coefficients[:, 2] * green + noise[:, 2]
    )
    return torch.stack([red, green, blue], dim=1)
