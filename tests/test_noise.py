"""Pixel noise shared by the renderers: the quantile table, the draws and the reflection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from biaslab.datasets.noise import MAX_SIGMAS, fill_with_noise, reflect_into_unit_interval


def test_noise_has_requested_spread_and_white_mean():
    images = np.empty((20, 32, 32, 3), dtype=np.float32)
    fill_with_noise(images, 0.03, np.random.default_rng(33))
    assert abs(images.mean() - 1.0) < 0.001, f"mean {images.mean():.5f}, expected 1"
    assert abs(images.std() - 0.03) < 0.001, f"standard deviation {images.std():.5f}"


def test_noise_follows_the_normal_distribution():
    images = np.empty((40, 32, 32, 3), dtype=np.float32)
    fill_with_noise(images, 0.05, np.random.default_rng(34))
    draws = (images.astype(np.float64).ravel() - 1.0) / 0.05
    result = stats.kstest(draws, "norm")
    assert result.pvalue > 1e-3, f"draws are not standard normal (KS p = {result.pvalue:.2g})"
    assert np.abs(draws).max() <= MAX_SIGMAS + 1e-4, f"a draw reached {np.abs(draws).max():.3f}"
    # About 3 in 1,000 normal draws lie beyond 3 standard deviations.
    beyond = (np.abs(draws) > 3).mean()
    assert 0.0015 < beyond < 0.0045, f"{beyond:.4%} of draws beyond 3 standard deviations"


def test_noise_depends_only_on_the_generator():
    first = np.empty((5, 16, 16, 3), dtype=np.float32)
    second = np.empty_like(first)
    fill_with_noise(first, 0.03, np.random.default_rng(35))
    fill_with_noise(second, 0.03, np.random.default_rng(35))
    assert np.array_equal(first, second), "one seed gave two different noise fields"
    fill_with_noise(second, 0.03, np.random.default_rng(36))
    assert not np.array_equal(first, second), "two seeds gave one noise field"


def test_noise_refuses_a_strided_view():
    images = np.empty((4, 16, 16, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        fill_with_noise(images[::2], 0.03, np.random.default_rng(37))


@pytest.mark.parametrize("sigma", [0.03, 0.4])
def test_reflection_folds_into_the_unit_interval(sigma):
    images = np.empty((8, 16, 16, 3), dtype=np.float32)
    fill_with_noise(images, sigma, np.random.default_rng(38))
    images[:, :4] -= 0.9  # a dark patch, as a drawn dot leaves it, near the lower border
    before = images.copy()
    reflect_into_unit_interval(images, sigma)
    assert images.min() >= 0.0, f"a value fell to {images.min()}, below 0"
    assert images.max() <= 1.0, f"a value rose to {images.max()}, above 1"
    # Values inside [0, 1] stay, values in (1, 2] fold back to 2 - v, up to float32 rounding.
    inside = (before >= 0) & (before <= 1)
    np.testing.assert_allclose(images[inside], before[inside], atol=1e-6)
    above = (before > 1) & (before <= 2)
    np.testing.assert_allclose(images[above], 2 - before[above], atol=1e-6)
