"""Reads of a study's results for the analyses, the comparison views and the exports.

A study's runs may snapshot at different steps (a sweep over models with their own
training recipes), so "the results at step S" means each run's newest snapshot
at or before S.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from biaslab.analysis.results import RunResult
from biaslab.store.models import Metric, Snapshot, Study
from biaslab.store.studies import run_axis_values

logger = logging.getLogger(__name__)


def snapshots_at(session: Session, run_ids: Sequence[int], step: int | None) -> dict[int, Snapshot]:
    """Map each run id to its newest snapshot at or before `step` (the newest when None).

    Runs without such a snapshot are left out.
    """
    if not run_ids:
        return {}
    newest = select(Snapshot.run_id, func.max(Snapshot.step).label("step")).where(
        Snapshot.run_id.in_(run_ids)
    )
    if step is not None:
        newest = newest.where(Snapshot.step <= step)
    chosen = newest.group_by(Snapshot.run_id).subquery()
    rows = session.scalars(
        select(Snapshot).join(
            chosen, (Snapshot.run_id == chosen.c.run_id) & (Snapshot.step == chosen.c.step)
        )
    ).all()
    return {snapshot.run_id: snapshot for snapshot in rows}


def snapshot_steps(session: Session, run_ids: Sequence[int]) -> list[int]:
    """Return every step at which some run of `run_ids` has a snapshot, ascending."""
    if not run_ids:
        return []
    steps = session.scalars(
        select(Snapshot.step).where(Snapshot.run_id.in_(run_ids)).distinct().order_by(Snapshot.step)
    ).all()
    return list(steps)


@dataclass(frozen=True)
class StudyResults:
    """The runs of a study as the analyses read them, and the step they were read at."""

    runs: list[RunResult]
    # Runs whose stored spec no longer validates, by index; the analyses leave them out.
    invalid: dict[int, str]
    step: int | None


def study_results(session: Session, study: Study, step: int | None = None) -> StudyResults:
    """Read each run's spec, sweep labels, training histograms and snapshot at `step`."""
    points = run_axis_values(study)
    snapshots = snapshots_at(session, [run.id for run in study.runs], step)
    results: list[RunResult] = []
    invalid: dict[int, str] = {}
    for run in study.runs:
        snapshot = snapshots.get(run.id)
        point = points.get(run.index)
        try:
            results.append(
                RunResult.from_json(
                    index=run.index,
                    spec=run.spec,
                    labels=point.labels if point is not None else {},
                    training=run.training_histograms,
                    generated=snapshot.histograms if snapshot is not None else None,
                    scores=snapshot.scores if snapshot is not None else None,
                    step=snapshot.step if snapshot is not None else None,
                )
            )
        except ValidationError as error:
            # A spec stored by an older version may not validate now; the other runs still count.
            logger.warning(
                "study %s run %s: stored spec is invalid now: %s", study.id, run.id, error
            )
            invalid[run.index] = str(error.errors()[0].get("msg", "invalid"))
    return StudyResults(runs=results, invalid=invalid, step=step)


def run_snapshots(session: Session, run_ids: Sequence[int]) -> dict[int, list[Snapshot]]:
    """Map each run id to all of its snapshots in step order, in one query."""
    by_run: dict[int, list[Snapshot]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    rows = session.scalars(
        select(Snapshot)
        .where(Snapshot.run_id.in_(run_ids))
        .order_by(Snapshot.run_id, Snapshot.step)
    ).all()
    for snapshot in rows:
        by_run[snapshot.run_id].append(snapshot)
    return by_run


def run_metrics(session: Session, run_ids: Sequence[int]) -> dict[int, list[Metric]]:
    """Map each run id to all of its logged metrics in step and name order, in one query."""
    by_run: dict[int, list[Metric]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    rows = session.scalars(
        select(Metric)
        .where(Metric.run_id.in_(run_ids))
        .order_by(Metric.run_id, Metric.step, Metric.name)
    ).all()
    for metric in rows:
        by_run[metric.run_id].append(metric)
    return by_run
