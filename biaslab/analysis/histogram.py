"""Histograms of probed features, on bins shared by training and generated data."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

# Counts 1..MAX_COUNT_BIN get a bin each; larger counts go into the last bin.
MAX_COUNT_BIN = 32
UNRECOGNIZED = -1


class FeatureHistogram(BaseModel):
    """Counts of a feature over fixed bins, plus the samples the probe could not read."""

    edges: list[float]
    # The label of each bin; empty in histograms stored before bins had labels.
    labels: list[str] = []
    counts: list[int]
    unrecognized: int
    total: int

    @property
    def unrecognized_share(self) -> float:
        return self.unrecognized / self.total if self.total else 0.0


def count_edges() -> np.ndarray:
    """Bin edges for dot counts: one bin per integer from 1 to MAX_COUNT_BIN."""
    return np.arange(0.5, MAX_COUNT_BIN + 1.0, 1.0)


def count_histogram(values: np.ndarray) -> FeatureHistogram:
    """Histogram integer counts; UNRECOGNIZED entries are tallied apart."""
    values = np.asarray(values)
    recognized = values[values != UNRECOGNIZED]
    clipped = np.clip(recognized, 1, MAX_COUNT_BIN)
    edges = count_edges()
    counts, _ = np.histogram(clipped, bins=edges)
    return FeatureHistogram(
        edges=edges.tolist(),
        counts=counts.astype(int).tolist(),
        unrecognized=int(values.size - recognized.size),
        total=int(values.size),
    )
