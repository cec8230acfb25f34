"""Percentile bootstrap intervals over seeds.

Every interval that the analyses report comes from here. The runs of a
condition (one per seed) are resampled with replacement, and the statistic is
recomputed on each of BOOTSTRAP_RESAMPLES resamples. The interval is the central
CONFIDENCE share of the resampled values (the percentile method). The generator
is seeded, so the same results give the same intervals. With one seed per group
every resample equals the data, and the interval is the point itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0

# Each group arrives with a leading resample axis, shape (R, n_i, ...), and the statistic
# returns shape (R, ...): the point estimate is the call with R = 1.
VectorStatistic = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap interval, and the number of seeds behind it."""

    value: float
    low: float
    high: float
    seeds: int

    def to_json(self) -> dict[str, Any]:
        """Return the estimate as JSON; NaN becomes null."""
        return {
            "value": _finite_or_none(self.value),
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "seeds": self.seeds,
        }


def method_json() -> dict[str, Any]:
    """Return how the intervals are computed, for the analysis response."""
    return {
        "method": "percentile bootstrap over seeds",
        "resamples": BOOTSTRAP_RESAMPLES,
        "confidence": CONFIDENCE,
        "seed": BOOTSTRAP_SEED,
    }


def bootstrap(
    groups: Sequence[np.ndarray],
    statistic: VectorStatistic,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the point estimate and the percentile interval's low and high ends.

    `groups` contains one array per group of runs, with one row per seed; each group
    is resampled on its own. Resamples whose statistic is NaN are left out of the
    percentiles; where all of them are, the ends are NaN.
    """
    if not groups or any(len(group) == 0 for group in groups):
        raise ValueError("bootstrap needs at least one run in every group")
    arrays = [np.asarray(group, dtype=np.float64) for group in groups]
    point = np.asarray(statistic([array[None] for array in arrays]), dtype=np.float64)[0]

    rng = np.random.default_rng(seed)
    resampled = [
        array[rng.integers(0, len(array), size=(resamples, len(array)))] for array in arrays
    ]
    draws = np.asarray(statistic(resampled), dtype=np.float64)
    tail = 100 * (1 - confidence) / 2
    with warnings.catch_warnings():
        # A bin whose resamples are all NaN gets NaN ends, which is the documented result.
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return point, np.asarray(low), np.asarray(high)


def estimate(
    groups: Sequence[np.ndarray], statistic: VectorStatistic, seeds: int | None = None
) -> Estimate:
    """Bootstrap a scalar statistic; `seeds` defaults to the size of the first group."""
    point, low, high = bootstrap(groups, statistic)
    return Estimate(
        value=float(point),
        low=float(low),
        high=float(high),
        seeds=len(groups[0]) if seeds is None else seeds,
    )


def mean_estimate(values: Sequence[float] | np.ndarray) -> Estimate:
    """Return the mean over seeds of one number per run, with its bootstrap interval.

    NaN values (a run with no recognized sample) are left out; with none left the
    estimate is NaN.
    """
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    return estimate([array], lambda groups: groups[0].mean(axis=1))


def mean_profile(rows: Sequence[np.ndarray] | np.ndarray) -> list[Estimate]:
    """Return the per-bin mean over seeds of (seeds, bins) distributions, with intervals.

    Rows with NaN (a run with no recognized sample) are left out.
    """
    array = np.asarray(rows, dtype=np.float64)
    array = array[~np.isnan(array).any(axis=1)]
    if array.shape[0] == 0:
        bins = np.asarray(rows).shape[-1]
        return [Estimate(math.nan, math.nan, math.nan, 0)] * bins
    point, low, high = bootstrap([array], lambda groups: groups[0].mean(axis=1))
    seeds = int(array.shape[0])
    return [
        Estimate(float(value), float(lo), float(hi), seeds)
        for value, lo, hi in zip(point, low, high, strict=True)
    ]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
