"""The numerosity section: generated counts of runs trained on a single count k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biaslab.analysis.bootstrap import estimate, mean_estimate
from biaslab.analysis.distances import probabilities
from biaslab.analysis.numerosity import count_moments, fit_lognormal, slopes
from biaslab.analysis.results import (
    SEED_PATH,
    RunResult,
    bin_centres,
    common_labels,
    group_runs,
    indices,
)
from biaslab.design import DotsDataset

COUNT_FEATURE = "count"
# Runs that differ only in these fields form one series over k.
SERIES_LEAVE_OUT = ("dataset.counts", "dataset.weights", SEED_PATH)


def numerosity_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return one series per setting: per-k moments and log-normal fits, and the spread's trend."""
    single = [
        run
        for run in runs
        if run.has_snapshot
        and isinstance(run.spec.dataset, DotsDataset)
        and len(run.spec.dataset.counts) == 1
        and COUNT_FEATURE in run.generated
    ]
    return [_series(group) for group in group_runs(single, SERIES_LEAVE_OUT)]


def _series(runs: list[RunResult]) -> dict[str, Any]:
    by_count: dict[int, list[RunResult]] = {}
    for run in runs:
        assert isinstance(run.spec.dataset, DotsDataset)
        by_count.setdefault(run.spec.dataset.counts[0], []).append(run)

    points: list[dict[str, Any]] = []
    spreads: dict[int, list[float]] = {}
    variations: dict[int, list[float]] = {}
    for count in sorted(by_count):
        group = by_count[count]
        moments, fits = [], []
        for run in group:
            histogram = run.generated[COUNT_FEATURE]
            centres = bin_centres(run.features().get(COUNT_FEATURE), histogram)
            moments.append(count_moments(probabilities(histogram), centres))
            fits.append(fit_lognormal(np.asarray(histogram.counts), centres))
        spreads[count] = [m.sd for m in moments if np.isfinite(m.sd)]
        variations[count] = [m.cv for m in moments if np.isfinite(m.cv)]
        points.append(
            {
                "count": count,
                "runs": indices(group),
                "mean": mean_estimate([m.mean for m in moments]).to_json(),
                "sd": mean_estimate([m.sd for m in moments]).to_json(),
                "cv": mean_estimate([m.cv for m in moments]).to_json(),
                "lognormal": {
                    "sigma": mean_estimate([fit.sigma for fit in fits]).to_json(),
                    "median": mean_estimate([fit.median for fit in fits]).to_json(),
                    "total_variation": mean_estimate(
                        [fit.total_variation for fit in fits]
                    ).to_json(),
                },
            }
        )
    return {
        "runs": indices(runs),
        "labels": common_labels(runs),
        "points": points,
        "trend": {
            "sd_slope": _slope_estimate(spreads),
            "cv_slope": _slope_estimate(variations),
        },
    }


def _slope_estimate(values_by_count: dict[int, list[float]]) -> dict[str, Any] | None:
    """Return the slope over k of the per-k mean, bootstrapped over seeds within each k.

    None with fewer than two counts that have a finite value.
    """
    counts = [count for count, values in values_by_count.items() if values]
    if len(counts) < 2:
        return None
    groups = [np.asarray(values_by_count[count]) for count in counts]
    x = np.asarray(counts, dtype=np.float64)

    def slope(resampled: Sequence[np.ndarray]) -> np.ndarray:
        means = np.stack([group.mean(axis=1) for group in resampled], axis=-1)
        return slopes(x, means)

    return estimate(groups, slope, seeds=min(len(group) for group in groups)).to_json()
