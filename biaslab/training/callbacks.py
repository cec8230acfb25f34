"""The interface between the training loop and its caller: snapshots, metrics and stop checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from biaslab.analysis.histogram import FeatureHistogram


@dataclass(frozen=True)
class SnapshotData:
    """The generated distribution at one step: probed histograms, scores, losses and a grid."""

    step: int
    # One histogram per feature of the dataset family, by feature name.
    histograms: dict[str, FeatureHistogram]
    losses: dict[str, float]
    grid_png: bytes
    # The family's summary numbers of the probed samples, such as precision and
    # recall of combinations; empty for families that define none. May be NaN.
    scores: dict[str, float] = field(default_factory=dict)


class TrainingCallbacks(Protocol):
    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        """Receive the training set's histogram of every feature once, before step 1.

        The histograms use the same bins as the snapshots' histograms.
        """

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        """Receive loss terms averaged over the steps since the previous call."""

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        """Receive a snapshot every `snapshot_every` steps and at the last step."""

    def should_stop(self, step: int) -> bool:
        """Return True to stop after `step`; called after every step, so keep it cheap."""
