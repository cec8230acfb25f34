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
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import DateTime, and_, delete, func, literal, null, or_, select, update
from sqlalchemy.orm import Session

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.store.events import record_event
from biaslab.store.models import Event, EventKind, Metric, Run, RunStatus, Snapshot, utcnow

logger = logging.getLogger(__name__)

# A queued run younger than this is left to the message its submitter is sending.
QUEUED_RESEND_GRACE_SECONDS = 10.0


def claim_run(
    session: Session,
    run_id: int,
    owner: str,
    lease_seconds: float,
    device: str,
    worker_host: str,
) -> Run | None:
    """Move a run to running under `owner`'s lease, or return None when it is not claimable.

    A run is claimable when it is queued, or running with an expired lease. One
    UPDATE checks and changes the status, so of two workers claiming at once,
    exactly one gets the run. Returns None for a run that is running with a live
    lease, has ended, or does not exist.
    """
    now = utcnow()
    claimable = or_(
        Run.status == RunStatus.queued,
        and_(Run.status == RunStatus.running, Run.lease_expires_at < now),
    )
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
            training_histograms=null(),
        )
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        return None

    # Results of an earlier attempt stay: the worker resumes from its checkpoint
    # and calls discard_results_after with the checkpoint's step.
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:  # the UPDATE above matched it in this transaction
        raise LookupError(f"run {run_id} vanished after it was claimed")
    record_event(session, run, EventKind.run)
    return run


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
) -> Snapshot:
    """Add the run's snapshot at `step`, or return the one already stored at that step.

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
