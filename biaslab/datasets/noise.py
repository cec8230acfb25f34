"""Gaussian pixel noise on a white canvas, folded back into [0, 1], shared by all renderers.

Renderers fill their output with noisy white first, draw their shapes over
it, then fold the values into [0, 1] by reflection at both borders.
"""

from __future__ import annotations

import sys

import numpy as np

# Images handled per block, so the scratch buffers stay in cache.
NOISE_BLOCK_IMAGES = 16


def fill_with_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Fill `images` with white plus Gaussian noise, not yet folded into [0, 1].

    Works through `NOISE_BLOCK_IMAGES` images at a time with buffers allocated once, which
    keeps the work in cache and avoids page faults from fresh temporaries.
    """
    normal = _NormalBuffers(images[:NOISE_BLOCK_IMAGES].size)
    for start in range(0, images.shape[0], NOISE_BLOCK_IMAGES):
        block = images[start : start + NOISE_BLOCK_IMAGES].reshape(-1)
        np.add(normal.draw(block.size, sigma, rng), np.float32(1.0), out=block)


def reflect_into_unit_interval(images: np.ndarray, sigma: float) -> None:
    """Fold noisy values into [0, 1] in place by reflecting at 0 and at 1."""
    # Draws never exceed _NormalBuffers.MAX_SIGMAS, so below this sigma every noisy value
    # lies in [-1, 2] and one reflection at each border is enough.
    single_reflection = sigma * _NormalBuffers.MAX_SIGMAS < 1.0
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


class _NormalBuffers:
    """Scratch buffers for drawing float32 normal noise with the Box-Muller transform.

    On a 2-core AMD EPYC virtual machine, numpy 2.4's float32 `standard_normal` took 8.6 ns
    per value and this transform 3.0 ns, both into reused buffers. Uniforms have 24-bit
    resolution, so the tails end at 5.8 sigma.
    """

    # Largest magnitude of a draw in standard deviations: sqrt(-2 ln 2^-24), since the
    # smallest uniform that enters the logarithm is 2^-24.
    MAX_SIGMAS = 5.77

    def __init__(self, size: int) -> None:
        half = (size + 1) // 2
        self._uniform = np.empty(2 * half, dtype=np.float32)
        self._noise = np.empty(2 * half, dtype=np.float32)

    def draw(self, size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Return `size` normal draws with standard deviation sigma, valid until the next call."""
        half = (size + 1) // 2
        uniform = self._uniform[: 2 * half].reshape(2, half)
        _fill_uniform(uniform.reshape(-1), rng)
        # 1 - u lies in (0, 1], so the logarithm is finite.
        magnitude = uniform[0]
        np.subtract(np.float32(1.0), magnitude, out=magnitude)
        np.log(magnitude, out=magnitude)
        magnitude *= np.float32(-2.0 * sigma * sigma)
        np.sqrt(magnitude, out=magnitude)
        angle = uniform[1]
        angle *= np.float32(2.0 * np.pi)
        noise = self._noise[: 2 * half]
        np.cos(angle, out=noise[:half])
        np.sin(angle, out=noise[half:])
        noise[:half] *= magnitude
        noise[half:] *= magnitude
        return noise[:size]


# Raw 64-bit draws converted per call of `random_raw`: at most 1 MiB of scratch, enough for a
# block of NOISE_BLOCK_IMAGES images of 64x64 in one call. Each numpy call takes the GIL,
# which renderers share with a thread that places dots, so blocks take few calls.
_RAW_DRAWS_PER_CALL = 131_072


def _fill_uniform(out: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the float32 array `out` as `rng.random(dtype=np.float32, out=out)` would.

    numpy 2.4 draws a float32 as (next 32 bits >> 8) * 2**-24, and PCG64 gives the low, then
    the high half of each 64-bit output, which tests/test_noise.py checks. Converting raw
    outputs in bulk gives the same values, leaves the generator at the same place and took 16
    instead of 23 microseconds per 12,288 values (2 vCPUs). Other bit generators, an odd
    size, a generator with half of an earlier output buffered, and big-endian machines use
    `rng.random`.
    """
    bit_generator = rng.bit_generator
    if (
        type(bit_generator) is not np.random.PCG64
        or sys.byteorder != "little"
        or out.size % 2
        or bit_generator.state["has_uint32"]
    ):
        rng.random(dtype=np.float32, out=out)
        return
    scale = np.float32(2.0**-24)
    for start in range(0, out.size, 2 * _RAW_DRAWS_PER_CALL):
        target = out[start : start + 2 * _RAW_DRAWS_PER_CALL]
        # On a little-endian machine the uint32 view puts each output's low half first.
        bits = bit_generator.random_raw(target.size // 2).view(np.uint32)
        np.right_shift(bits, 8, out=bits)
        # Below 2**24 after the shift, so the values convert to float32 exactly. A cast and a
        # multiplication took 20% less time than one multiplication that casts.
        np.copyto(target, bits.view(np.int32), casting="unsafe")
        target *= scale
