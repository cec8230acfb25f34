"""Several modes: the additive prediction and the prototype-enhancement index.

A run trained on several modes (counts {2, 4}, or two red shares) is compared
with runs trained on each mode alone. If the model treated the modes
independently, its generated distribution would be the additive prediction:
the mixture of the single-mode runs' generated distributions, weighted by each
mode's share of the training images.

The prototype-enhancement index measures how much more often the model
generates values between the trained ones than the additive prediction does.
"Between" bins are the bins whose centre lies strictly between the smallest and
the largest trained value and is no trained value itself: 3 for {2, 4}; 3 to 6
for {2, 7}; 3, 5 and 6 for {2, 4, 7}. With observed_between and
predicted_between the shares of recognized samples in those bins:

- ratio = observed_between / predicted_between, NaN when the prediction puts no
  mass there. A ratio above 1 is prototype enhancement;
- difference = observed_between - predicted_between, in shares of samples.

Bins are those of the family's feature. The pie family's red share has a bin
at every half value of its 1-9 scale, so red shares 0.3 and 0.4 (values 3 and
4) have the bin 3.5 between them. Two trained values in neighbouring bins, such
as pie sizes 3 and 4, have no bin between them, and the index is NaN.

Every bin between the trained values counts, including one next to a trained
value's bin. Probe error moves a few samples of a trained value into such a bin
without the model generating anything new. Of 20,000 renders per trained red
value of the "red-share" template, at most 0.08% at 32x32 and none at 64x64
landed in a neighbouring half bin, and at most 0.46% with size and position
drawn per image (docs/probe-pie.md). That is well under 1%, and the single-mode
runs' samples go through the same probe, so the additive prediction contains
the same spill. A mixture run that generates what its single-mode runs do
therefore scores a ratio near 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def additive_prediction(
    distributions: Sequence[np.ndarray] | np.ndarray, weights: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Return the mixture of the single-mode `distributions` with the training `weights`.

    `distributions` has shape (modes, ..., bins); weights need not sum to 1.
    """
    stacked = np.asarray(distributions, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64)
    if shares.shape != (stacked.shape[0],):
        raise ValueError(
            f"{shares.size} weights for {stacked.shape[0]} distributions; give one weight each"
        )
    if (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"weights {shares.tolist()} must be non-negative with a positive sum")
    shares = shares / shares.sum()
    return np.asarray(np.tensordot(shares, stacked, axes=1))


def between_bins(centres: np.ndarray, trained: Sequence[float]) -> np.ndarray:
    """Return a mask of the bins strictly between the trained values that hold none of them."""
    centres = np.asarray(centres, dtype=np.float64)
    values = np.asarray(trained, dtype=np.float64)
    inside = (centres > values.min()) & (centres < values.max())
    is_trained = np.isclose(centres[:, None], values[None, :]).any(axis=1)
    return np.asarray(inside & ~is_trained)


def between_share(p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the share of mass in the masked bins, along the last axis."""
    return np.asarray(np.sum(np.asarray(p) * mask, axis=-1))


def enhancement_ratio(observed_between: np.ndarray, predicted_between: np.ndarray) -> np.ndarray:
    """Return observed_between / predicted_between, NaN where the prediction is 0."""
    observed = np.asarray(observed_between, dtype=np.float64)
    predicted = np.asarray(predicted_between, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(predicted > 0, observed / np.where(predicted > 0, predicted, 1), math.nan)
