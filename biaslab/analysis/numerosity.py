"""Numerosity: how generated counts spread around a trained count k.

For each run trained on one count, the generated counts of recognized samples
give a mean, a standard deviation (of the distribution, not of a sample: divided
by n) and a coefficient of variation sd / mean. The published finding is that
the spread grows with k while sd / mean stays roughly constant (a Weber-like
law), and that the counts look log-normal. So each run also gets a log-normal
fit, and each series of runs over k gets the slopes of sd and of the CV against k.

Counts come from histogram bins, and each bin is read as its centre. So the
last bin, which contains every count of MAX_COUNT_BIN or more, counts as
MAX_COUNT_BIN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import lognorm


@dataclass(frozen=True)
class CountMoments:
    mean: float
    sd: float
    cv: float


@dataclass(frozen=True)
class LognormalFit:
    """A log-normal fitted by maximum likelihood with its location held at 0.

    `sigma` is the standard deviation of log(count), `median` is exp(mean of
    log(count)), and `total_variation` is the distance between the histogram and
    the fit's probabilities of the bins [c - 0.5, c + 0.5], renormalized over the
    bins: 0 for a perfect fit.
    """

    sigma: float
    median: float
    total_variation: float


def count_moments(p: np.ndarray, centres: np.ndarray) -> CountMoments:
    """Return the mean, sd and CV of counts distributed as `p` over bin `centres`."""
    p = np.asarray(p, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if np.isnan(p).any():
        return CountMoments(math.nan, math.nan, math.nan)
    mean = float(np.sum(p * centres))
    sd = float(math.sqrt(max(np.sum(p * (centres - mean) ** 2), 0.0)))
    cv = sd / mean if mean > 0 else math.nan
    return CountMoments(mean, sd, cv)


def fit_lognormal(counts: np.ndarray, centres: np.ndarray) -> LognormalFit:
    """Fit a log-normal to histogram `counts` over positive bin `centres` (scipy.stats.lognorm).

    Needs at least two distinct recognized counts; with fewer the fit is NaN.
    """
    counts = np.asarray(counts, dtype=np.int64)
    centres = np.asarray(centres, dtype=np.float64)
    if np.count_nonzero(counts) < 2:
        return LognormalFit(math.nan, math.nan, math.nan)
    if (centres[counts > 0] <= 0).any():
        raise ValueError("a log-normal fit needs positive values; the bins hold zero or less")
    samples = np.repeat(centres, counts)
    sigma, _, scale = lognorm.fit(samples, floc=0)
    mass = lognorm.cdf(centres + 0.5, sigma, scale=scale) - lognorm.cdf(
        centres - 0.5, sigma, scale=scale
    )
    fitted = mass / mass.sum()
    observed = counts / counts.sum()
    return LognormalFit(
        sigma=float(sigma),
        median=float(scale),
        total_variation=float(0.5 * np.abs(observed - fitted).sum()),
    )


def slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return least-squares slopes of y against x along the last axis.

    `y` has shape (..., len(x)); the result has shape (...). NaN where x has one value.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = x - x.mean()
    spread = np.sum(dx**2)
    if spread == 0:
        return np.full(y.shape[:-1], math.nan)
    return np.asarray(np.sum(dx * (y - y.mean(axis=-1, keepdims=True)), axis=-1) / spread)
