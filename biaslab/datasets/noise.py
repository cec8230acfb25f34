"""Gaussian pixel noise on a white canvas, folded back into [0, 1], shared by all renderers.

Renderers fill their output with noisy white first, draw their shapes over
it, then fold the values into [0, 1] by reflection at both borders.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

# Images per block: small enough that a block and its random bits stay in cache.
NOISE_BLOCK_IMAGES = 16

# Draws are the normal quantiles at the midpoints (k + 0.5) / 65536 of 65,536 equally likely
# bins, chosen by 16-bit random integers: two numpy calls per block of images, where the
# Box-Muller transform took fourteen. Both cost about the same CPU time on one thread, but a
# thread must win the GIL back after each call while another thread draws dots, so renders on
# two threads ran 14-17% faster. The values near the mean are spaced below 1e-4 standard
# deviations, and the tails end at MAX_SIGMAS, where 1.5e-5 of normal draws lie beyond.
_QUANTILES = ndtri((np.arange(2**16) + 0.5) / 2**16).astype(np.float32)
# Largest magnitude of a draw in standard deviations, about 4.33.
MAX_SIGMAS = float(_QUANTILES[-1])


def fill_with_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Fill the C-contiguous `images` with white plus Gaussian noise, not yet folded into [0, 1].

    Works through `NOISE_BLOCK_IMAGES` images at a time, each block in two numpy calls: the
    random bits, then the gather from a table of 1 + sigma * quantile.
    """
    if not images.flags.c_contiguous:
        raise ValueError("images must be C-contiguous, so that the noise lands in them")
    values = _QUANTILES * np.float32(sigma) + np.float32(1.0)
    flat = images.reshape(-1)
    block = images[:NOISE_BLOCK_IMAGES].size
    for start in range(0, flat.size, block):
        target = flat[start : start + block]
        # Each 64-bit output gives four 16-bit indices. Every 16-bit index lies in the table,
        # so "clip" changes no value. It skips the bounds check of the default "raise", which
        # took a third of the gather's time.
        bits = rng.bit_generator.random_raw((target.size + 3) // 4)
        np.take(values, bits.view(np.uint16)[: target.size], out=target, mode="clip")


def reflect_into_unit_interval(images: np.ndarray, sigma: float) -> None:
    """Fold noisy values into [0, 1] in place by reflecting at 0 and at 1."""
    # Draws never exceed MAX_SIGMAS, so below this sigma every noisy value lies in [-1, 2]
    # and one reflection at each border is enough.
    single_reflection = sigma * MAX_SIGMAS < 1.0
    for start in range(0, images.shape[0], NOISE_BLOCK_IMAGES):
        block = images[start : start + NOISE_BLOCK_IMAGES].reshape(-1)
        if single_reflection or (block.min() >= -1.0 and block.max() <= 2.0):
            _reflect_once(block)
        else:
            _reflect_repeatedly(block)


def _reflect_once(values: np.ndarray) -> None:
    """Fold values in [-1, 2] into [0, 1] in place, reflecting at 0 and at 1."""
    np.abs(values, out=values)
    np.subtract(1.0, values, out=values)
    np.abs(values, out=values)
    np.subtract(1.0, values, out=values)


def _reflect_repeatedly(values: np.ndarray) -> None:
    """Fold any values into [0, 1] in place with a triangle wave of period 2."""
    np.add(values, 1.0, out=values)
    np.mod(values, 2.0, out=values)
    np.subtract(values, 1.0, out=values)
    np.abs(values, out=values)
