"""Server-Sent Events of a study: run status changes and new snapshots, resumable by event id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.deps import MAX_INTEGER, StudyId
from backend.routes.runs import figures_public, run_public
from backend.schemas import SnapshotEvent, SnapshotPublic
from backend.security.identity import CurrentUser, Principal
from backend.security.ownership import can_read
from biaslab.store.db import session_scope
from biaslab.store.models import EventKind, Run, RunStatus, Snapshot, Study
from biaslab.store.studies import events_after

router = APIRouter(prefix="/api/studies", tags=["events"])

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
# How often running runs are checked for a new step, to move the progress bars.
PROGRESS_SECONDS = 1.0
# Tells EventSource how long to wait before reconnecting.
RETRY_MILLISECONDS = 2000


def _study_visible(sessions: sessionmaker[Session], study_id: int, user: Principal | None) -> bool:
    with session_scope(sessions) as session:
        study = session.get(Study, study_id)
        return study is not None and can_read(study, user)


def _load_messages(
    sessions: sessionmaker[Session], study_id: int, after_id: int
) -> tuple[list[tuple[int, str, str]], int]:
    """Render the events after `after_id` as (id, event name, JSON data), with the last id read."""
    messages = []
    last_id = after_id
    with session_scope(sessions) as session:
        for event in events_after(session, study_id, after_id):
            last_id = event.id
            run = session.get(Run, event.run_id)
            if run is None:
                continue
            if event.kind is EventKind.snapshot and event.snapshot_id is not None:
                snapshot = session.get(Snapshot, event.snapshot_id)
                if snapshot is None:
                    continue
                payload = SnapshotEvent(
                    run_id=run.id,
                    snapshot=SnapshotPublic.from_row(snapshot),
                    figures=figures_public(session, run, snapshot),
                ).model_dump_json()
            else:
                payload = run_public(session, run).model_dump_json()
            messages.append((event.id, event.kind.value, payload))
    return messages, last_id


def _load_progress(
    sessions: sessionmaker[Session], study_id: int, known_steps: dict[int, int]
) -> list[str]:
    """Render a `run` message for each running run whose step moved since the last call.

    Heartbeats update a run's step every few seconds without recording events, so
    progress is read from the runs themselves. These messages carry no id: they
    are a view of the current state, and a reconnect needs no replay of them.
    """
    messages = []
    with session_scope(sessions) as session:
        running = session.scalars(
            select(Run).where(Run.study_id == study_id, Run.status == RunStatus.running)
        ).all()
        for run in running:
            if known_steps.get(run.id) == run.step:
                continue
            known_steps[run.id] = run.step
            messages.append(f"event: run\ndata: {run_public(session, run).model_dump_json()}\n\n")
    return messages


def _format(event_id: int, name: str, data: str) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n"


@router.get("/{study_id}/events", response_class=StreamingResponse)
async def study_events(
    study_id: StudyId,
    request: Request,
    user: CurrentUser,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_INTEGER)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_INTEGER, description="Send events with a larger id only.")
    ] = None,
) -> StreamingResponse:
    """Stream the study's events; a reconnect with Last-Event-ID resumes after that event."""
    # No session dependency here: it would hold a database connection for the stream's lifetime.
    sessions = request.app.state.sessions
    if not await run_in_threadpool(_study_visible, sessions, study_id, user):
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    start = last_event_id if last_event_id is not None else (after or 0)

    async def stream() -> AsyncIterator[str]:
        cursor = start
        idle = 0.0
        since_progress = 0.0
        known_steps: dict[int, int] = {}
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        while not await request.is_disconnected():
            messages, cursor = await run_in_threadpool(_load_messages, sessions, study_id, cursor)
            for event_id, name, data in messages:
                yield _format(event_id, name, data)
            if messages:
                idle = 0.0
                continue
            if since_progress >= PROGRESS_SECONDS:
                since_progress = 0.0
                for message in await run_in_threadpool(
                    _load_progress, sessions, study_id, known_steps
                ):
                    idle = 0.0
                    yield message
            await asyncio.sleep(POLL_SECONDS)
            since_progress += POLL_SECONDS
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
