"""Pixel noise shared by the renderers: the fast uniform draws and the reflection."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.datasets.noise import _RAW_DRAWS_PER_CALL, _fill_uniform, fill_with_noise


def generator_pair(kind: type, seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.Generator(kind(seed)), np.random.Generator(kind(seed))


@pytest.mark.parametrize("size", [2, 1_000, 2 * _RAW_DRAWS_PER_CALL + 6, 7])
@pytest.mark.parametrize("kind", [np.random.PCG64, np.random.Philox])
def test_fast_uniforms_equal_numpy_random(size, kind):
    fast_rng, numpy_rng = generator_pair(kind, 31)
    fast = np.empty(size, dtype=np.float32)
    expected = np.empty(size, dtype=np.float32)
    _fill_uniform(fast, fast_rng)
    numpy_rng.random(dtype=np.float32, out=expected)
    assert np.array_equal(fast, expected), f"{kind.__name__}, {size} values differ"
    assert fast_rng.random() == numpy_rng.random(), "the generators moved apart"
    assert fast_rng.random(dtype=np.float32) == numpy_rng.random(dtype=np.float32), (
        "the generators hold different halves of a 64-bit output"
    )


def test_fast_uniforms_after_odd_draws():
    fast_rng, numpy_rng = generator_pair(np.random.PCG64, 32)
    fast_rng.random(dtype=np.float32)  # leaves half of a 64-bit output for the next draw
    numpy_rng.random(dtype=np.float32)
    fast = np.empty(64, dtype=np.float32)
    expected = np.empty(64, dtype=np.float32)
    _fill_uniform(fast, fast_rng)
    numpy_rng.random(dtype=np.float32, out=expected)
    assert np.array_equal(fast, expected), "values differ after an odd number of draws"


def test_noise_has_requested_spread_and_white_mean():
    images = np.empty((20, 32, 32, 3), dtype=np.float32)
    fill_with_noise(images, 0.03, np.random.default_rng(33))
    assert abs(images.mean() - 1.0) < 0.001, f"mean {images.mean():.5f}, expected 1"
    assert abs(images.std() - 0.03) < 0.001, f"standard deviation {images.std():.5f}"
