"""Combinations: how the generated cells cover the training cells.

A combinations run's `cell` histogram has one bin per training cell and a last
bin, "other", for every recognized sample in a cell outside the training set.

- precision: the share of recognized samples in training cells;
- recall: the share of training cells with at least one sample;
- recall at precision p: cells count as generated when at least t samples fall
  in them. For a threshold t, g(t) training cells are generated and recall(t) =
  g(t) / N. The histogram lumps the other cells together, so at most
  floor(other / t) of them reach t samples, and precision(t) = g(t) / (g(t) +
  floor(other / t)) is a lower bound on the share of generated cells that are
  training cells. The recall at precision p is the largest recall(t) over
  thresholds t >= 1 with precision(t) >= p, and 0 when no threshold reaches p.
  Because precision is a lower bound, so is this recall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TARGET_PRECISION = 0.9


@dataclass(frozen=True)
class Coverage:
    precision: float
    recall: float
    recall_at_precision: float


def coverage(cell_counts: np.ndarray, target_precision: float = TARGET_PRECISION) -> Coverage:
    """Return precision, recall and recall at `target_precision` of a cell histogram.

    `cell_counts` contains the N training cells' counts and then the "other" count.
    """
    counts = np.asarray(cell_counts, dtype=np.int64)
    if counts.size < 2:
        raise ValueError("a cell histogram needs at least one training cell and the other bin")
    training, other = counts[:-1], int(counts[-1])
    recognized = int(counts.sum())
    precision = training.sum() / recognized if recognized else math.nan
    recall = np.count_nonzero(training) / training.size
    return Coverage(
        precision=float(precision),
        recall=float(recall),
        recall_at_precision=recall_at_precision(training, other, target_precision),
    )


def recall_at_precision(training: np.ndarray, other: int, target_precision: float) -> float:
    """Return the largest thresholded recall whose precision bound reaches `target_precision`."""
    training = np.asarray(training, dtype=np.int64)
    best = 0.0
    # Only thresholds equal to some training cell's count change g(t). Among thresholds
    # with the same g(t), the largest allows the fewest other cells, so it is the one to test.
    for threshold in np.unique(training[training > 0]):
        generated = int(np.count_nonzero(training >= threshold))
        other_cells = other // int(threshold)
        if generated / (generated + other_cells) >= target_precision:
            best = max(best, generated / training.size)
    return best
