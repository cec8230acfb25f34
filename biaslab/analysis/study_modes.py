"""The several-modes section: runs trained on several modes against their single-mode controls.

A mixture run's controls are the runs whose spec is the same apart from the
modes, their weights and the seed, and that were trained on one of the
mixture's modes alone. Modes are the counts of a dots design and the entries of
a pie design's `values`. A pie mixture is analysed on each feature whose trained
values differ between its entries, such as the red share for 0.3 with 0.4. A
feature that some entry draws per image (value 0) is left out.

Runs compare only on the same bins. A feature's bins can change between
versions (the red share had one bin per value before it had one per half
value), so a study can hold runs whose stored histograms have other bins than
the feature has now. Each entry uses the bins of the feature when a run of the
condition has them, else those of the condition's first run, and lists the runs
whose histograms have other bins under `left_out`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biaslab.analysis.bootstrap import Estimate, bootstrap
from biaslab.analysis.distances import probabilities
from biaslab.analysis.histogram import FeatureHistogram
from biaslab.analysis.modes import (
    additive_prediction,
    between_bins,
    between_share,
    enhancement_ratio,
)
from biaslab.analysis.results import (
    SEED_PATH,
    RunResult,
    bin_centres,
    common_labels,
    group_runs,
    indices,
    spec_key,
)
from biaslab.design import DotsDataset
from biaslab.design.pie import RANDOM_VALUE, PieDataset
from biaslab.families.base import Feature

# The pie features in the order of a `values` entry (size, x, y, red).
PIE_FEATURES = ("size", "x", "y", "red_share")


@dataclass(frozen=True)
class Modes:
    """The modes of a design: its entries, their training shares, and the fields they set."""

    entries: list[Any]
    weights: list[float]
    # Feature name -> the value of that feature in each entry.
    features: dict[str, list[float]]
    # The dotted paths that hold the modes; specs that differ only there share controls.
    paths: tuple[str, ...]


def design_modes(dataset: Any) -> Modes | None:
    """Return the modes of a dots or pie design, None for other families."""
    if isinstance(dataset, DotsDataset):
        return Modes(
            entries=list(dataset.counts),
            weights=dataset.count_probabilities(),
            features={"count": [float(count) for count in dataset.counts]},
            paths=("dataset.counts", "dataset.weights"),
        )
    if isinstance(dataset, PieDataset):
        features: dict[str, list[float]] = {}
        for position, name in enumerate(PIE_FEATURES):
            column = [entry[position] for entry in dataset.values]
            values = [value for value in column if value is not None and value != RANDOM_VALUE]
            if len(values) == len(column):
                features[name] = [float(value) for value in values]
        return Modes(
            entries=[tuple(entry) for entry in dataset.values],
            weights=dataset.value_probabilities(),
            features=features,
            paths=("dataset.values", "dataset.weights"),
        )
    return None


def modes_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return one entry per mixture condition and varying feature."""
    finished = [run for run in runs if run.has_snapshot]
    section: list[dict[str, Any]] = []
    for group in group_runs(finished, [SEED_PATH]):
        modes = design_modes(group[0].spec.dataset)
        if modes is None or len(modes.entries) < 2:
            continue
        controls = _controls(group[0], modes, finished)
        for feature, trained in modes.features.items():
            if len(set(trained)) < 2 or not all(feature in run.generated for run in group):
                continue
            section.append(_compare(group, modes, controls, feature, trained))
    return section


def _controls(mixture: RunResult, modes: Modes, runs: Sequence[RunResult]) -> list[list[RunResult]]:
    """Return, per entry of the mixture, the single-mode runs trained on that entry alone."""
    leave_out = [*modes.paths, SEED_PATH]
    key = spec_key(mixture.spec, leave_out)
    controls: list[list[RunResult]] = [[] for _ in modes.entries]
    for run in runs:
        run_modes = design_modes(run.spec.dataset)
        if run_modes is None or len(run_modes.entries) != 1:
            continue
        if run_modes.entries[0] in modes.entries and spec_key(run.spec, leave_out) == key:
            controls[modes.entries.index(run_modes.entries[0])].append(run)
    return controls


def _compare(
    group: list[RunResult],
    modes: Modes,
    all_controls: list[list[RunResult]],
    feature: str,
    trained: list[float],
) -> dict[str, Any]:
    known = group[0].features().get(feature)
    histogram = _reference_histogram([run.generated[feature] for run in group], known)
    centres = bin_centres(known, histogram)
    mask = between_bins(centres, trained)
    bins = len(histogram.counts)

    # Runs whose histograms have other bins (stored by an older version) are left out.
    mixture = [run for run in group if _same_bins(run.generated[feature], histogram)]
    with_feature = [[run for run in runs if feature in run.generated] for runs in all_controls]
    controls = [
        [run for run in runs if _same_bins(run.generated[feature], histogram)]
        for runs in with_feature
    ]
    kept = {run.index for run in [*mixture, *(run for runs in controls for run in runs)]}
    left_out = sorted(
        run.index
        for run in [*group, *(run for runs in with_feature for run in runs)]
        if run.index not in kept
    )

    observed = _rows([run.generated[feature] for run in mixture])
    usable = [_rows([run.generated[feature] for run in entry_runs]) for entry_runs in controls]
    missing = [
        _entry_json(entry)
        for entry, rows in zip(modes.entries, usable, strict=True)
        if rows.shape[0] == 0
    ]
    entry = {
        "runs": indices(group),
        "labels": common_labels(group),
        "feature": feature,
        "bins": _bin_labels(histogram, centres),
        "trained": trained,
        "weights": modes.weights,
        "controls": [
            {"mode": _entry_json(mode), "runs": indices(entry_runs)}
            for mode, entry_runs in zip(modes.entries, controls, strict=True)
        ],
        "missing_controls": missing,
        "left_out": left_out,
        "between": [
            label
            for label, inside in zip(_bin_labels(histogram, centres), mask, strict=True)
            if inside
        ],
    }
    if observed.shape[0] == 0:
        return {**entry, "observed": None, "prediction": None}

    weights = np.asarray(modes.weights)

    def statistic(resampled: Sequence[np.ndarray]) -> np.ndarray:
        observed_profile = resampled[0].mean(axis=1)
        observed_between = between_share(observed_profile, mask)
        if missing:
            nan = np.full(observed_between.shape, math.nan)
            prediction = np.full(observed_profile.shape, math.nan)
            return np.concatenate(
                [observed_profile, prediction, np.stack([observed_between, nan, nan, nan], -1)],
                axis=-1,
            )
        means = np.stack([group.mean(axis=1) for group in resampled[1:]])
        prediction = additive_prediction(means, weights)
        predicted_between = between_share(prediction, mask)
        ratio = enhancement_ratio(observed_between, predicted_between)
        difference = observed_between - predicted_between
        return np.concatenate(
            [
                observed_profile,
                prediction,
                np.stack([observed_between, predicted_between, ratio, difference], axis=-1),
            ],
            axis=-1,
        )

    groups = [observed, *([] if missing else usable)]
    point, low, high = bootstrap(groups, statistic)
    observed_seeds = observed.shape[0]
    control_seeds = 0 if missing else min(rows.shape[0] for rows in usable)

    def pick(position: int, seeds: int) -> dict[str, Any]:
        return Estimate(
            float(point[position]), float(low[position]), float(high[position]), seeds
        ).to_json()

    labels = _bin_labels(histogram, centres)
    most_likely = int(np.argmax(point[:bins]))
    has_between = bool(mask.any())
    return {
        **entry,
        "observed": [pick(i, observed_seeds) for i in range(bins)],
        "prediction": None if missing else [pick(bins + i, control_seeds) for i in range(bins)],
        "observed_between": pick(2 * bins, observed_seeds) if has_between else None,
        "predicted_between": (
            pick(2 * bins + 1, control_seeds) if has_between and not missing else None
        ),
        "enhancement_ratio": (
            pick(2 * bins + 2, min(observed_seeds, control_seeds))
            if has_between and not missing
            else None
        ),
        "enhancement_difference": (
            pick(2 * bins + 3, min(observed_seeds, control_seeds))
            if has_between and not missing
            else None
        ),
        "most_likely": labels[most_likely],
        "most_likely_between": bool(mask[most_likely]),
    }


def _reference_histogram(
    histograms: Sequence[FeatureHistogram], feature: Feature | None
) -> FeatureHistogram:
    """Return the first histogram on the feature's bins, else the first one."""
    if feature is not None:
        for histogram in histograms:
            if len(histogram.counts) == len(feature.centres):
                return histogram
    return histograms[0]


def _same_bins(histogram: FeatureHistogram, reference: FeatureHistogram) -> bool:
    return len(histogram.edges) == len(reference.edges) and bool(
        np.allclose(histogram.edges, reference.edges)
    )


def _rows(histograms: Sequence[FeatureHistogram]) -> np.ndarray:
    """Return one row of bin probabilities per histogram, leaving out those with none recognized."""
    rows = [probabilities(histogram) for histogram in histograms]
    rows = [row for row in rows if not np.isnan(row).any()]
    if not rows:
        return np.empty((0, len(histograms[0].counts) if histograms else 0))
    return np.stack(rows)


def _bin_labels(histogram: FeatureHistogram, centres: np.ndarray) -> list[str]:
    if len(histogram.labels) == len(histogram.counts):
        return list(histogram.labels)
    return [f"{centre:g}" for centre in centres]


def _entry_json(entry: Any) -> Any:
    return list(entry) if isinstance(entry, tuple) else entry
