"""Studies and the queries the API makes (the worker's side is in `runs`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.orm import Session, selectinload

from biaslab.design import StudyCreate, SweepPoint, design_points, expand_runs
from biaslab.store.events import record_event
from biaslab.store.models import Event, EventKind, Metric, Run, RunStatus, Snapshot, Study, utcnow


def create_study(session: Session, design: StudyCreate, owner_id: int | None = None) -> Study:
    """Add a study and its queued runs; the caller commits, then sends the run ids."""
    study = Study(name=design.name, design=design.model_dump(mode="json"), owner_id=owner_id)
    study.runs = [
        Run(index=run.index, spec=run.spec.model_dump(mode="json"), status=RunStatus.queued)
        for run in expand_runs(design)
    ]
    session.add(study)
    session.flush()
    for run in study.runs:
        record_event(session, run, EventKind.run)
    return study


def run_axis_values(study: Study) -> dict[int, SweepPoint]:
    """Map each run's index to its sweep axis values, read from the study's stored design.

    Runs are numbered in the sweep's order when the study is created, so the
    design and a run's index determine its axis values and nothing else stores them.
    """
    return {point.index: point for point in design_points(study.design)}


def list_studies(
    session: Session, limit: int, offset: int, visible: ColumnElement[bool] | None = None
) -> tuple[Sequence[Study], int]:
    """Return one page of the `visible` studies, newest first, with their runs, and their count."""
    visible = true() if visible is None else visible
    total = session.scalar(select(func.count(Study.id)).where(visible)) or 0
    # Runs are loaded in one extra query for the whole page rather than one per study.
    studies = session.scalars(
        select(Study)
        .options(selectinload(Study.runs))
        .where(visible)
        .order_by(Study.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return studies, total


def get_study(session: Session, study_id: int) -> Study | None:
    return session.scalars(
        select(Study).options(selectinload(Study.runs)).where(Study.id == study_id)
    ).one_or_none()


def get_study_summary(session: Session, study_id: int) -> Study | None:
    """Return the study with its runs, leaving the runs' designs and training histograms unread.

    Read those two columns with `run_statics_rows` when they are needed.
    """
    return session.scalars(
        select(Study)
        .options(selectinload(Study.runs).defer(Run.spec).defer(Run.training_histograms))
        .where(Study.id == study_id)
    ).one_or_none()


def runs_with_training_histograms(session: Session, run_ids: Sequence[int]) -> set[int]:
    """Return the ids among `run_ids` of the runs whose training histograms are stored."""
    if not run_ids:
        return set()
    return set(
        session.scalars(
            select(Run.id).where(Run.id.in_(run_ids), Run.training_histograms.is_not(None))
        )
    )


def run_statics_rows(
    session: Session, run_ids: Sequence[int]
) -> Sequence[tuple[int, dict[str, Any], dict[str, Any] | None, datetime]]:
    """Return (id, design, training histograms, creation time) of each run in `run_ids`."""
    if not run_ids:
        return []
    query = select(Run.id, Run.spec, Run.training_histograms, Run.created_at).where(
        Run.id.in_(run_ids)
    )
    return session.execute(query).tuples().all()


def delete_study(session: Session, study: Study) -> None:
    """Delete a study with its runs and their results.

    A queued run is then never claimed, and a worker training one of the runs
    loses its lease at its next heartbeat and stops. The caller deletes the
    runs' checkpoints and sample grids after the commit, with
    `biaslab.artifacts.delete_run_artifacts`.
    """
    session.delete(study)
    session.flush()


def latest_snapshot_steps(session: Session, run_ids: Sequence[int]) -> dict[int, int]:
    """Map each run id to the step of its newest snapshot (runs without one are left out)."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Snapshot.run_id, func.max(Snapshot.step))
        .where(Snapshot.run_id.in_(run_ids))
        .group_by(Snapshot.run_id)
    ).all()
    return {run_id: step for run_id, step in rows}


def list_snapshots(session: Session, run_id: int) -> Sequence[Snapshot]:
    return session.scalars(
        select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.step)
    ).all()


def get_snapshot(session: Session, run_id: int, step: int | None) -> Snapshot | None:
    """Return the snapshot of `run_id` at `step`, or its newest one when step is None."""
    query = select(Snapshot).where(Snapshot.run_id == run_id)
    if step is None:
        query = query.order_by(Snapshot.step.desc()).limit(1)
    else:
        query = query.where(Snapshot.step == step)
    return session.scalars(query).first()


def list_metrics(
    session: Session, run_id: int, upto_step: int | None = None
) -> Sequence[tuple[int, str, float]]:
    """Return a run's logged values as (step, name, value) rows, up to `upto_step` if given.

    Plain rows, not ORM objects: a run logs hundreds of values, and the run
    page reads them on every step it shows.
    """
    query = select(Metric.step, Metric.name, Metric.value).where(Metric.run_id == run_id)
    if upto_step is not None:
        query = query.where(Metric.step <= upto_step)
    return session.execute(query.order_by(Metric.step, Metric.name)).tuples().all()


def request_cancel(session: Session, run: Run) -> bool:
    """Cancel a queued run at once; ask a running one to stop at its next step.

    Each UPDATE checks the status it expects, so a worker claiming or finishing
    the run at the same moment is never overwritten. Returns False when the run
    had already ended.
    """
    cancelled_now = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == RunStatus.queued)
        .values(status=RunStatus.cancelled, cancel_requested=True, finished_at=utcnow())
        .returning(Run.id)
    ).scalar_one_or_none()
    if cancelled_now is None:
        flagged = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status == RunStatus.running)
            .values(cancel_requested=True)
            .returning(Run.id)
        ).scalar_one_or_none()
        if flagged is None:
            session.refresh(run)
            return False
    session.refresh(run)
    record_event(session, run, EventKind.run)
    return True


def events_after(
    session: Session,
    study_id: int,
    after_id: int,
    limit: int = 200,
    upto_id: int | None = None,
) -> Sequence[Event]:
    """Return up to `limit` of the study's events after `after_id` (and up to `upto_id`)."""
    query = select(Event).where(Event.study_id == study_id, Event.id > after_id)
    if upto_id is not None:
        query = query.where(Event.id <= upto_id)
    return session.scalars(query.order_by(Event.id).limit(limit)).all()


def last_event_id(session: Session, study_id: int) -> int:
    """Return the id of the study's newest event, 0 when it has none."""
    newest = session.scalar(select(func.max(Event.id)).where(Event.study_id == study_id))
    return newest or 0
