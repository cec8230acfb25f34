"""Workers on the broker: registration, heartbeat, the run each trains, and who is alive.

A worker's main process registers when it is ready and renews its heartbeat
every `WORKER_HEARTBEAT_SECONDS`; the pool process that trains a run sets and
clears the worker's current run. A worker killed without a shutdown leaves its
row; the row counts as alive while its heartbeat is younger than
`WORKER_ALIVE_SECONDS`, and is deleted once older than `WORKER_FORGET_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from biaslab.queue import QUEUES
from biaslab.store.models import Worker, utcnow

WORKER_HEARTBEAT_SECONDS = 5.0
# Three missed heartbeats.
WORKER_ALIVE_SECONDS = 3 * WORKER_HEARTBEAT_SECONDS
WORKER_FORGET_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class WorkerInfo:
    """The facts a worker reports to the store when it registers."""

    name: str
    host: str
    device: str
    queues: Sequence[str]


def register_worker(session: Session, info: WorkerInfo) -> Worker:
    """Add the worker, or reset the row a worker of the same name left behind."""
    queues = ",".join(info.queues)
    now = utcnow()
    worker = session.scalars(select(Worker).where(Worker.name == info.name)).one_or_none()
    if worker is None:
        worker = Worker(name=info.name, host=info.host, device=info.device, queues=queues)
        session.add(worker)
    worker.host = info.host
    worker.device = info.device
    worker.queues = queues
    worker.current_run_id = None
    worker.started_at = now
    worker.last_heartbeat_at = now
    session.flush()
    return worker


def worker_heartbeat(session: Session, name: str) -> bool:
    """Renew the worker's heartbeat; return False when its row is gone (it registers again)."""
    renewed = session.execute(
        update(Worker)
        .where(Worker.name == name)
        .values(last_heartbeat_at=utcnow())
        .returning(Worker.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return renewed is not None


def set_current_run(session: Session, name: str, run_id: int | None) -> None:
    """Record the run the worker trains now; None when it trains none."""
    session.execute(
        update(Worker)
        .where(Worker.name == name)
        .values(current_run_id=run_id, last_heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def unregister_worker(session: Session, name: str) -> None:
    session.execute(delete(Worker).where(Worker.name == name))


def list_workers(session: Session, now: datetime | None = None) -> Sequence[Worker]:
    """Return the workers seen within `WORKER_FORGET_SECONDS`, deleting older rows."""
    now = now or utcnow()
    forgotten = now - timedelta(seconds=WORKER_FORGET_SECONDS)
    session.execute(delete(Worker).where(Worker.last_heartbeat_at < forgotten))
    return session.scalars(select(Worker).order_by(Worker.host, Worker.name)).all()


def is_alive(worker: Worker, now: datetime) -> bool:
    seen = worker.last_heartbeat_at
    # SQLite returns naive datetimes; every stored time is UTC.
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=now.tzinfo)
    return now - seen <= timedelta(seconds=WORKER_ALIVE_SECONDS)


def worker_queues(worker: Worker) -> list[str]:
    return [name for name in worker.queues.split(",") if name]


def available_devices(workers: Sequence[Worker], now: datetime) -> list[str]:
    """Return the queues that at least one live worker consumes, in the order of `QUEUES`."""
    served = {name for worker in workers if is_alive(worker, now) for name in worker_queues(worker)}
    return [name for name in QUEUES if name in served]
