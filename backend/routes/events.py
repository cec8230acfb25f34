"""Server-Sent Events of a study: run status changes and new snapshots, resumable by event id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.routes.runs import figures_public, run_public
from backend.schemas import SnapshotEvent, SnapshotPublic
from biaslab.store.db import session_scope
from biaslab.store.models import EventKind, Run, Snapshot, Study
from biaslab.store.studies import events_after

router = APIRouter(prefix="/api/studies", tags=["events"])

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
# Tells EventSource how long to wait before reconnecting.
RETRY_MILLISECONDS = 2000


def _study_exists(sessions: sessionmaker[Session], study_id: int) -> bool:
    with session_scope(sessions) as session:
        return session.get(Study, study_id) is not None


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


def _format(event_id: int, name: str, data: str) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n"


@router.get("/{study_id}/events", response_class=StreamingResponse)
async def study_events(
    study_id: int,
    request: Request,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Send events with a larger id only.")
    ] = None,
) -> StreamingResponse:
    """Stream the study's events; a reconnect with Last-Event-ID resumes after that event."""
    # No session dependency here: it would hold a database connection for the stream's lifetime.
    sessions = request.app.state.sessions
    if not await run_in_threadpool(_study_exists, sessions, study_id):
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    start = last_event_id if last_event_id is not None else (after or 0)

    async def stream() -> AsyncIterator[str]:
        cursor = start
        idle = 0.0
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        while not await request.is_disconnected():
            messages, cursor = await run_in_threadpool(_load_messages, sessions, study_id, cursor)
            for event_id, name, data in messages:
                yield _format(event_id, name, data)
            if messages:
                idle = 0.0
                continue
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
