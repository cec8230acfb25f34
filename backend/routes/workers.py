"""Workers: who is connected, on which device, training which run, last seen when."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from backend.deps import SessionDep
from backend.schemas import UtcDatetime
from backend.security.identity import CurrentUser
from backend.security.ownership import can_read
from biaslab.store.models import Run, Study, utcnow
from biaslab.store.workers import (
    WORKER_ALIVE_SECONDS,
    available_devices,
    is_alive,
    list_workers,
    worker_queues,
)

router = APIRouter(prefix="/api/workers", tags=["workers"])


class WorkerRunPublic(BaseModel):
    """The run a worker trains; id and study are None when the study is private to someone else."""

    id: int | None
    study_id: int | None
    study_name: str | None
    step: int
    steps: int
    progress: float


class WorkerPublic(BaseModel):
    name: str
    host: str
    device: str
    queues: list[str]
    run: WorkerRunPublic | None
    started_at: UtcDatetime
    last_heartbeat_at: UtcDatetime
    # False once the worker has missed its heartbeats for `alive_seconds`.
    alive: bool


class WorkersPublic(BaseModel):
    workers: list[WorkerPublic]
    # The devices (queues) that a live worker takes runs from: what a new run can ask for.
    devices: list[str]
    alive_seconds: float


@router.get("")
def list_all(session: SessionDep, user: CurrentUser) -> WorkersPublic:
    now = utcnow()
    workers = list_workers(session, now)
    run_ids = [worker.current_run_id for worker in workers if worker.current_run_id is not None]
    # One query for every worker's run and study, not one per worker.
    runs = {
        run.id: (run, study)
        for run, study in session.execute(
            select(Run, Study).join(Study, Study.id == Run.study_id).where(Run.id.in_(run_ids))
        ).all()
    }
    public = []
    for worker in workers:
        found = runs.get(worker.current_run_id) if worker.current_run_id is not None else None
        run_public = None
        if found is not None:
            run, study = found
            visible = can_read(study, user)
            run_public = WorkerRunPublic(
                id=run.id if visible else None,
                study_id=study.id if visible else None,
                study_name=study.name if visible else None,
                step=run.step,
                steps=run.spec["training"]["steps"],
                progress=run.progress,
            )
        public.append(
            WorkerPublic(
                name=worker.name,
                host=worker.host,
                device=worker.device,
                queues=worker_queues(worker),
                run=run_public,
                started_at=worker.started_at,
                last_heartbeat_at=worker.last_heartbeat_at,
                alive=is_alive(worker, now),
            )
        )
    return WorkersPublic(
        workers=public,
        devices=available_devices(workers, now),
        alive_seconds=WORKER_ALIVE_SECONDS,
    )
