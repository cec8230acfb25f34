"""Distances between generated and training distributions, per run and per condition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from biaslab.analysis.bootstrap import mean_estimate
from biaslab.analysis.distances import (
    kl_divergence,
    probabilities,
    total_variation,
    wasserstein_1,
)
from biaslab.analysis.results import (
    SEED_PATH,
    RunResult,
    bin_centres,
    common_labels,
    group_runs,
    indices,
)

METRICS = (
    "total_variation",
    "kl_generated_training",
    "kl_training_generated",
    "wasserstein_1",
    "unrecognized_share",
)


def run_distances(run: RunResult) -> dict[str, dict[str, float]]:
    """Return each feature's distances between the run's newest snapshot and its training set.

    Wasserstein-1 is NaN for categorical features (shapes, colours, cells), which have no
    order. Features missing from either histogram set are left out.
    """
    features = run.features()
    distances: dict[str, dict[str, float]] = {}
    for name, generated in run.generated.items():
        training = run.training.get(name)
        if training is None or len(training.counts) != len(generated.counts):
            continue
        feature = features.get(name)
        p_generated = probabilities(generated)
        p_training = probabilities(training)
        ordered = feature is None or not feature.categorical
        distances[name] = {
            "total_variation": total_variation(p_generated, p_training),
            "kl_generated_training": kl_divergence(p_generated, p_training),
            "kl_training_generated": kl_divergence(p_training, p_generated),
            "wasserstein_1": (
                wasserstein_1(p_generated, p_training, bin_centres(feature, generated))
                if ordered
                else math.nan
            ),
            "unrecognized_share": generated.unrecognized_share,
        }
    return distances


def runs_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return one entry per run: its labels, step and per-feature distances."""
    return [
        {
            "index": run.index,
            "labels": dict(run.labels),
            "step": run.step,
            "features": {
                name: {metric: _json_number(value) for metric, value in values.items()}
                for name, values in run_distances(run).items()
            },
        }
        for run in runs
        if run.has_snapshot
    ]


def conditions_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return the distances of each condition (runs that differ in the seed alone) over seeds."""
    section: list[dict[str, Any]] = []
    for group in group_runs([run for run in runs if run.has_snapshot], [SEED_PATH]):
        per_run = [run_distances(run) for run in group]
        names = [name for name in per_run[0] if all(name in values for values in per_run)]
        section.append(
            {
                "runs": indices(group),
                "labels": common_labels(group),
                "features": {
                    name: {
                        metric: mean_estimate(
                            [values[name][metric] for values in per_run]
                        ).to_json()
                        for metric in METRICS
                    }
                    for name in names
                },
            }
        )
    return section


def _json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
