"""Distances between a generated and a training distribution of one feature.

Both distributions are over the recognized samples only: each histogram's
counts are divided by their sum, and the unrecognized share is reported apart.
The two histograms must use the same bins, which holds for a run's training and
snapshot histograms because both come from the family's feature.

- total variation: half the sum of absolute differences of the bin
  probabilities, from 0 (equal) to 1 (disjoint);
- KL divergence in nats, with additive smoothing: KL_EPSILON is added to every
  bin's probability and each distribution is renormalized, p' = (p + e) / (1 + K e)
  for K bins. Without it the divergence is infinite as soon as one distribution
  puts mass on a bin the other never reaches (3 dots after training on 2 and 4),
  which is the case these studies look for. With e = 1e-4, a generated share g in
  a bin that training never reaches adds about g * ln(g / 1e-4) nats;
- Wasserstein-1 (earth mover's distance) on the bin centres, in the feature's
  unit (dots, or steps of the 1-9 pie scale), by scipy.stats.wasserstein_distance.
  It is defined for ordered features only, not for shapes, colours or cells.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import wasserstein_distance

from biaslab.analysis.histogram import FeatureHistogram

KL_EPSILON = 1e-4


def probabilities(histogram: FeatureHistogram) -> np.ndarray:
    """Return the share of recognized samples in each bin; all NaN when none was recognized."""
    counts = np.asarray(histogram.counts, dtype=np.float64)
    recognized = counts.sum()
    if recognized == 0:
        return np.full(counts.shape, math.nan)
    return counts / recognized


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Return the total variation distance between two distributions on the same bins."""
    p, q = _same_bins(p, q)
    return float(0.5 * np.abs(p - q).sum())


def smooth(p: np.ndarray, epsilon: float = KL_EPSILON) -> np.ndarray:
    """Add `epsilon` to every bin and renormalize."""
    p = np.asarray(p, dtype=np.float64)
    return (p + epsilon) / (p.sum() + epsilon * p.size)


def kl_divergence(p: np.ndarray, q: np.ndarray, epsilon: float = KL_EPSILON) -> float:
    """Return KL(p || q) in nats after additive smoothing of both distributions."""
    p, q = _same_bins(p, q)
    if np.isnan(p).any() or np.isnan(q).any():
        return math.nan
    smoothed_p, smoothed_q = smooth(p, epsilon), smooth(q, epsilon)
    return float(np.sum(smoothed_p * np.log(smoothed_p / smoothed_q)))


def wasserstein_1(p: np.ndarray, q: np.ndarray, centres: np.ndarray) -> float:
    """Return the Wasserstein-1 distance between two distributions on the bin `centres`."""
    p, q = _same_bins(p, q)
    if np.isnan(p).any() or np.isnan(q).any():
        return math.nan
    centres = np.asarray(centres, dtype=np.float64)
    if centres.shape != p.shape:
        raise ValueError(f"{centres.size} bin centres for {p.size} bins; give one centre per bin")
    return float(wasserstein_distance(centres, centres, u_weights=p, v_weights=q))


def _same_bins(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(
            f"distributions over {p.size} and {q.size} bins cannot be compared; "
            "histogram both on the same feature's bins"
        )
    return p, q
