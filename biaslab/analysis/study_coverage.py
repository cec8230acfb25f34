"""The combinations and shapes sections: coverage of training and held-out combinations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from biaslab.analysis.bootstrap import mean_estimate
from biaslab.analysis.combinations import TARGET_PRECISION, coverage
from biaslab.analysis.held_out import held_out_generated_share
from biaslab.analysis.results import SEED_PATH, RunResult, common_labels, group_runs, indices
from biaslab.design.combinations import CombinationsDataset
from biaslab.design.shapes import ShapesDataset

CELL_FEATURE = "cell"
# Runs that differ only in these fields form one curve over the number of combinations.
CURVE_LEAVE_OUT = ("dataset.combinations", SEED_PATH)


def combinations_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return one curve per setting: precision, recall and recall at 0.9 precision against N."""
    eligible = [
        run
        for run in runs
        if isinstance(run.spec.dataset, CombinationsDataset) and CELL_FEATURE in run.generated
    ]
    curves: list[dict[str, Any]] = []
    for series in group_runs(eligible, CURVE_LEAVE_OUT):
        by_size: dict[int, list[RunResult]] = {}
        for run in series:
            assert isinstance(run.spec.dataset, CombinationsDataset)
            by_size.setdefault(run.spec.dataset.combinations, []).append(run)
        points = []
        for size in sorted(by_size):
            group = by_size[size]
            covered = [coverage(np.asarray(run.generated[CELL_FEATURE].counts)) for run in group]
            points.append(
                {
                    "combinations": size,
                    "runs": indices(group),
                    "precision": mean_estimate([c.precision for c in covered]).to_json(),
                    "recall": mean_estimate([c.recall for c in covered]).to_json(),
                    "recall_at_precision": mean_estimate(
                        [c.recall_at_precision for c in covered]
                    ).to_json(),
                }
            )
        curves.append(
            {
                "runs": indices(series),
                "labels": common_labels(series),
                "target_precision": TARGET_PRECISION,
                "points": points,
            }
        )
    return curves


def shapes_section(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Return per condition the share of held-out combinations generated, over seeds."""
    eligible = [
        run for run in runs if isinstance(run.spec.dataset, ShapesDataset) and run.has_snapshot
    ]
    section: list[dict[str, Any]] = []
    for group in group_runs(eligible, [SEED_PATH]):
        section.append(
            {
                "runs": indices(group),
                "labels": common_labels(group),
                "held_out_generated": mean_estimate(
                    [held_out_generated_share(run.scores) for run in group]
                ).to_json(),
                "held_out_sample_share": mean_estimate(
                    [_score(run, "held_out_share") for run in group]
                ).to_json(),
                "training_sample_share": mean_estimate(
                    [_score(run, "training_share") for run in group]
                ).to_json(),
            }
        )
    return section


def _score(run: RunResult, name: str) -> float:
    value = run.scores.get(name)
    return math.nan if value is None else float(value)
