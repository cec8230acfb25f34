"""The run state machine on the worker's side: claim, heartbeat, results, finish.

A run moves queued -> running -> succeeded | failed | cancelled. The worker that
claims a run holds its lease (`lease_owner`, `lease_expires_at`) and renews it
by heartbeat. A run whose lease has expired may be claimed again, so a broker
message delivered twice, or a worker that died, never makes two workers train
one run at once.

Every function works in the caller's session and leaves the commit to it
(`session_scope`), so each call is one short transaction. A change that a
browser shows records its Event in that same transaction.

Times are UTC from this process's clock. Workers on several machines compare
each other's lease times, so their clocks must agree to well under a lease.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    and_,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.store.events import record_event
from biaslab.store.models import (
    Event,
    EventKind,
    Metric,
    Run,
    RunStatus,
    Snapshot,
    Study,
    User,
    utcnow,
)

logger = logging.getLogger(__name__)

# A queued run younger than this is left to the message its submitter is sending.
QUEUED_RESEND_GRACE_SECONDS = 10.0
# The first key of the advisory locks that serialize one owner's claims on PostgreSQL.
CLAIM_LOCK_NAMESPACE = 0x6231


def was_claimed_before(session: Session, run_id: int) -> bool:
    """Return True when a worker has claimed run `run_id` before, so it may resume.

    The first claim sets `started_at`, and nothing clears it. A run that was
    never claimed has written no checkpoint, so any checkpoint at its path is
    a leftover of a deleted run whose id the database reused (SQLite does).
    Call it in the claim's transaction, before `claim_run`: a claim that
    another worker commits in between makes `claim_run` return None.
    """
    started_at = session.scalar(select(Run.started_at).where(Run.id == run_id))
    return started_at is not None


def claim_run(
    session: Session,
    run_id: int,
    owner: str,
    lease_seconds: float,
    device: str,
    worker_host: str,
    *,
    max_in_flight: int | None = None,
) -> Run | None:
    """Move a run to running under `owner`'s lease, or return None when it is not claimable.

    A run is claimable when it is running with an expired lease, or queued while
    its study's owner has fewer than `max_in_flight` other runs running (no limit
    when None). One UPDATE checks and changes the status, so of two workers
    claiming at once, exactly one gets the run. Returns None for a run that is
    running with a live lease, has ended, does not exist, or waits for its
    owner's limit; a waiting run gets a `waiting_reason` that says so.
    """
    now = utcnow()
    expired = and_(Run.status == RunStatus.running, Run.lease_expires_at < now)
    if max_in_flight is None:
        claimable = or_(Run.status == RunStatus.queued, expired)
    else:
        study_owner = _lock_owner_claims(session, run_id)
        in_flight = _in_flight_count(study_owner, exclude_run_id=run_id).scalar_subquery()
        claimable = or_(expired, and_(Run.status == RunStatus.queued, in_flight < max_in_flight))
    claimed = session.execute(
        update(Run)
        .where(Run.id == run_id, claimable)
        .values(
            status=RunStatus.running,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Run.started_at, literal(now, DateTime(timezone=True))),
            device=device,
            worker_host=worker_host,
            step=0,
            progress=0.0,
            error=None,
            waiting_reason=None,
            training_histograms=null(),
        )
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        if max_in_flight is not None:
            _note_waiting(session, run_id, study_owner, max_in_flight)
        return None

    # Results of an earlier attempt stay: the worker resumes from its checkpoint
    # and calls discard_results_after with the checkpoint's step.
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:  # the UPDATE above matched it in this transaction
        raise LookupError(f"run {run_id} vanished after it was claimed")
    record_event(session, run, EventKind.run)
    return run


def runs_waiting_for_slot(
    session: Session, run_id: int, max_in_flight: int
) -> list[tuple[int, dict[str, Any]]]:
    """Return (id, spec) of the queued runs waiting for the slots of `run_id`'s owner, oldest first.

    A worker that ended or released `run_id` sends these again at once, rather than
    leaving them to the sweep. At most as many as the owner has free slots.
    """
    study_owner = session.scalar(
        select(Study.owner_id).join(Run, Run.study_id == Study.id).where(Run.id == run_id)
    )
    free = max_in_flight - (session.scalar(_in_flight_count(study_owner)) or 0)
    if free <= 0:
        return []
    rows = session.execute(
        select(Run.id, Run.spec)
        .join(Study, Study.id == Run.study_id)
        .where(
            Run.status == RunStatus.queued,
            Run.waiting_reason.is_not(None),
            _owned_by(study_owner),
        )
        .order_by(Run.id)
        .limit(free)
    ).all()
    return [(waiting_id, spec) for waiting_id, spec in rows]


def _owned_by(study_owner: int | None) -> ColumnElement[bool]:
    # Studies made while authentication was off have no owner; they share one limit.
    return Study.owner_id.is_(None) if study_owner is None else Study.owner_id == study_owner


def _in_flight_count(study_owner: int | None, exclude_run_id: int | None = None) -> Select[Any]:
    """Count the running runs of the studies of `study_owner`."""
    other = aliased(Run)
    query = (
        select(func.count(other.id))
        .join(Study, Study.id == other.study_id)
        .where(other.status == RunStatus.running, _owned_by(study_owner))
    )
    if exclude_run_id is not None:
        query = query.where(other.id != exclude_run_id)
    return query


def _lock_owner_claims(session: Session, run_id: int) -> int | None:
    """Return the owner of `run_id`'s study; on PostgreSQL, also serialize that owner's claims.

    Under READ COMMITTED, two claims of one owner's runs would each count the
    other's run as not running yet and both pass the limit. A transaction-scoped
    advisory lock per owner makes the second claim wait until the first commits;
    its UPDATE then takes a new snapshot and counts the first run. SQLite needs
    no lock: a write statement holds the database's single write lock from its
    start, so its count and its change see the same state.
    """
    study_owner = session.scalar(
        select(Study.owner_id).join(Run, Run.study_id == Study.id).where(Run.id == run_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_NAMESPACE, study_owner or 0)))
    return study_owner


def _note_waiting(
    session: Session, run_id: int, study_owner: int | None, max_in_flight: int
) -> None:
    """Record why a queued run was not claimed, when its owner's limit is the reason."""
    in_flight = session.scalar(_in_flight_count(study_owner, exclude_run_id=run_id)) or 0
    if in_flight < max_in_flight:
        return
    who = "studies without an owner"
    if study_owner is not None:
        who = session.scalar(select(User.name).where(User.id == study_owner)) or who
    reason = f"waiting: {who} has {in_flight} runs training, the limit per user is {max_in_flight}"
    noted = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.status == RunStatus.queued,
            or_(Run.waiting_reason.is_(None), Run.waiting_reason != reason),
        )
        .values(waiting_reason=reason)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if noted is not None:
        logger.info("run %s: %s", run_id, reason)
        record_event(session, _get_run(session, run_id, refresh=True), EventKind.run)


def discard_results_after(session: Session, run_id: int, step: int) -> int:
    """Delete the run's snapshots, their events and its metrics after `step`.

    A resumed run reports every step after its checkpoint again, so an earlier
    attempt's results past that step are deleted first. With `step` 0 all of them
    are deleted. Returns the number of snapshots deleted.
    """
    later_snapshots = select(Snapshot.id).where(Snapshot.run_id == run_id, Snapshot.step > step)
    # Snapshot events point at the snapshots, so they go first.
    session.execute(delete(Event).where(Event.snapshot_id.in_(later_snapshots)))
    deleted = session.execute(
        delete(Snapshot)
        .where(Snapshot.run_id == run_id, Snapshot.step > step)
        .returning(Snapshot.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.execute(
        delete(Metric)
        .where(Metric.run_id == run_id, Metric.step > step)
        .execution_options(synchronize_session=False)
    )
    if deleted:
        logger.info("run %s: deleted %d snapshots after step %d", run_id, len(deleted), step)
    return len(deleted)


def heartbeat(
    session: Session, run_id: int, owner: str, step: int, steps: int, lease_seconds: float
) -> bool:
    """Renew `owner`'s lease and record progress; return True when the worker must stop.

    The worker must stop when cancel was requested, and also when the lease is
    no longer `owner`'s: another worker claimed the run after the lease expired,
    or the run has ended.
    """
    cancel_requested = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.running)
        .values(
            lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
            step=step,
            progress=min(step / steps, 1.0) if steps > 0 else 0.0,
        )
        .returning(Run.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if cancel_requested is None:
        logger.warning("run %s: lease of %s was lost; the worker must stop", run_id, owner)
        return True
    return cancel_requested


def renew_lease(session: Session, run_id: int, owner: str, lease_seconds: float) -> bool | None:
    """Extend `owner`'s lease by `lease_seconds` from now, leaving step and progress as they are.

    Returns whether cancel was requested, or None when `owner` no longer holds
    the lease: another worker claimed the run after the lease expired, or the
    run is no longer running.
    """
    return session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.running)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(Run.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()


def save_training_histograms(
    session: Session, run_id: int, histograms: Mapping[str, FeatureHistogram]
) -> None:
    """Store the histograms of the run's training set, which charts draw beside snapshots."""
    run = _get_run(session, run_id)
    run.training_histograms = _dump_histograms(histograms)
    record_event(session, run, EventKind.run)


def add_snapshot(
    session: Session,
    run_id: int,
    step: int,
    histograms: Mapping[str, FeatureHistogram],
    losses: Mapping[str, float],
    grid_path: str | None,
    scores: Mapping[str, float] | None = None,
) -> Snapshot:
    """Add the run's snapshot at `step`, or return the one already stored at that step.

    Non-finite `scores` are stored as null, because JSON has no NaN.

    A redelivered run replays its steps, so the same step may be reported twice.
    NOTE: a read before the insert is enough because only the lease owner calls
    this. Two writers racing on one step would fail on the unique constraint.
    """
    existing = session.scalars(
        select(Snapshot).where(Snapshot.run_id == run_id, Snapshot.step == step)
    ).one_or_none()
    if existing is not None:
        logger.info("run %s: snapshot at step %s is already stored", run_id, step)
        return existing

    run = _get_run(session, run_id)
    snapshot = Snapshot(
        run_id=run_id,
        step=step,
        histograms=_dump_histograms(histograms),
        losses=dict(losses),
        scores={
            name: float(value) if math.isfinite(value) else None
            for name, value in (scores or {}).items()
        },
        grid_path=grid_path,
    )
    session.add(snapshot)
    session.flush()  # assigns snapshot.id for the event
    record_event(session, run, EventKind.snapshot, snapshot_id=snapshot.id)
    return snapshot


def add_metrics(session: Session, run_id: int, step: int, losses: Mapping[str, float]) -> None:
    """Store the run's loss terms at `step`, skipping names already stored at that step."""
    stored = set(
        session.scalars(select(Metric.name).where(Metric.run_id == run_id, Metric.step == step))
    )
    session.add_all(
        Metric(run_id=run_id, step=step, name=name, value=float(value))
        for name, value in losses.items()
        if name not in stored
    )


def finish_run(
    session: Session,
    run_id: int,
    owner: str,
    status: RunStatus,
    error: str | None = None,
    step: int | None = None,
) -> bool:
    """End a running run held by `owner`; return False when `owner` does not hold it.

    Sets finished_at, clears the lease, and on success sets progress to 1.0.
    `step`, when given, is the last step trained.
    """
    if not status.is_terminal:
        raise ValueError(
            f"status {status.value!r} does not end a run; use succeeded, failed or cancelled"
        )

    values: dict[str, object] = {
        "status": status,
        "finished_at": utcnow(),
        "error": error,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if status is RunStatus.succeeded:
        values["progress"] = 1.0
    if step is not None:
        values["step"] = step
    finished = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.running)
        .values(values)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if finished is None:
        return False

    run = _get_run(session, run_id, refresh=True)
    record_event(session, run, EventKind.run)
    return True


def release_run(session: Session, run_id: int, owner: str) -> bool:
    """Put a running run held by `owner` back to queued, for a worker that is shutting down.

    Returns False when `owner` does not hold the run. The next claim starts it again.
    """
    released = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.running)
        .values(status=RunStatus.queued, lease_owner=None, lease_expires_at=None)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if released is None:
        return False

    run = _get_run(session, run_id, refresh=True)
    record_event(session, run, EventKind.run)
    return True


def runs_to_resend(
    session: Session,
    now: datetime,
    *,
    include_queued: bool = True,
    queued_grace_seconds: float = QUEUED_RESEND_GRACE_SECONDS,
) -> list[int]:
    """Return the ids of runs whose broker message may be lost, oldest first.

    These are running runs whose lease expired before `now` and, with
    `include_queued`, runs queued for longer than `queued_grace_seconds`.
    """
    expired = and_(Run.status == RunStatus.running, Run.lease_expires_at < now)
    condition = expired
    if include_queued:
        stale_queued = and_(
            Run.status == RunStatus.queued,
            Run.created_at < now - timedelta(seconds=queued_grace_seconds),
        )
        condition = or_(expired, stale_queued)
    return list(session.scalars(select(Run.id).where(condition).order_by(Run.id)))


def _get_run(session: Session, run_id: int, refresh: bool = False) -> Run:
    run = session.get(Run, run_id, populate_existing=refresh)
    if run is None:
        raise LookupError(f"run {run_id} not found")
    return run


def _dump_histograms(histograms: Mapping[str, FeatureHistogram]) -> dict[str, object]:
    return {name: histogram.model_dump(mode="json") for name, histogram in histograms.items()}
