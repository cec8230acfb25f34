"""The results of a study's runs as plain data, and how the analyses group them.

`RunResult` contains what the analyses read from one run: its spec, its sweep
labels, the training histograms and the newest snapshot's histograms and
scores. Runs are grouped by their specs, never by their labels: two runs belong
to one condition when their specs differ in the training seed alone, so the
analyses work the same for studies with and without sweep axes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import RunSpec
from biaslab.families import family_for
from biaslab.families.base import Feature

SEED_PATH = "training.seed"


@dataclass(frozen=True)
class RunResult:
    """One run's spec, sweep labels, training histograms and newest snapshot."""

    index: int
    spec: RunSpec
    # Sweep axis title -> this run's label on that axis.
    labels: Mapping[str, str] = field(default_factory=dict)
    training: Mapping[str, FeatureHistogram] = field(default_factory=dict)
    # The newest snapshot's histograms and scores; empty while the run has none.
    generated: Mapping[str, FeatureHistogram] = field(default_factory=dict)
    scores: Mapping[str, float | None] = field(default_factory=dict)
    step: int | None = None

    @classmethod
    def from_json(
        cls,
        index: int,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        training: Mapping[str, Any] | None = None,
        generated: Mapping[str, Any] | None = None,
        scores: Mapping[str, float | None] | None = None,
        step: int | None = None,
    ) -> RunResult:
        """Build a result from stored JSON: a run spec and histograms as the store keeps them."""
        return cls(
            index=index,
            spec=RunSpec.model_validate(spec),
            labels=dict(labels or {}),
            training=_histograms(training),
            generated=_histograms(generated),
            scores=dict(scores or {}),
            step=step,
        )

    @property
    def has_snapshot(self) -> bool:
        return bool(self.generated)

    def features(self) -> dict[str, Feature]:
        """Return the dataset family's features of this run by name."""
        design = self.spec.dataset
        return {feature.name: feature for feature in family_for(design).features(design)}


def _histograms(stored: Mapping[str, Any] | None) -> dict[str, FeatureHistogram]:
    return {name: FeatureHistogram.model_validate(value) for name, value in (stored or {}).items()}


def spec_key(spec: RunSpec, leave_out: Iterable[str]) -> str:
    """Return canonical JSON of the spec without the fields at the dotted paths `leave_out`."""
    tree = spec.model_dump(mode="json")
    for path in leave_out:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.get(part, {})
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def group_runs(runs: Sequence[RunResult], leave_out: Iterable[str]) -> list[list[RunResult]]:
    """Group runs whose specs agree outside `leave_out`, in order of each group's first run."""
    paths = list(leave_out)
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(spec_key(run.spec, paths), []).append(run)
    return list(groups.values())


def common_labels(runs: Sequence[RunResult]) -> dict[str, str]:
    """Return the sweep labels that every run of the group shares."""
    if not runs:
        return {}
    shared = dict(runs[0].labels)
    for run in runs[1:]:
        shared = {axis: label for axis, label in shared.items() if run.labels.get(axis) == label}
    return shared


def bin_centres(feature: Feature | None, histogram: FeatureHistogram) -> np.ndarray:
    """Return the bin centres: the feature's, else the midpoints of the histogram's edges."""
    if feature is not None and len(feature.centres) == len(histogram.counts):
        return np.asarray(feature.centres, dtype=np.float64)
    edges = np.asarray(histogram.edges, dtype=np.float64)
    return (edges[1:] + edges[:-1]) / 2


def indices(runs: Sequence[RunResult]) -> list[int]:
    return [run.index for run in runs]
