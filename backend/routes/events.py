"""Server-Sent Events of a study: run status changes and new snapshots, resumable by event id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.deps import MAX_INTEGER, StudyId
from backend.event_feed import CLOSED, EventFeeds, load_messages
from backend.security.identity import CurrentUser, Principal
from backend.security.ownership import can_read
from biaslab.store.db import session_scope
from biaslab.store.models import Study

router = APIRouter(prefix="/api/studies", tags=["events"])

KEEPALIVE_SECONDS = 15.0
# Tells EventSource how long to wait before reconnecting.
RETRY_MILLISECONDS = 2000


def _study_visible(sessions: sessionmaker[Session], study_id: int, user: Principal | None) -> bool:
    with session_scope(sessions) as session:
        study = session.get(Study, study_id)
        return study is not None and can_read(study, user)


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

    feeds: EventFeeds = request.app.state.event_feeds

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        async with feeds.watch(study_id) as subscription:
            # The events this stream has not seen and the feed had already sent.
            cursor = start
            while cursor < subscription.start:
                messages, read_upto = await run_in_threadpool(
                    load_messages, sessions, study_id, cursor, subscription.start
                )
                for backlog in messages:
                    yield backlog.encode()
                if read_upto == cursor:
                    break
                cursor = read_upto
            while True:
                try:
                    message = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if message is CLOSED:
                    return
                if message.event_id is not None and message.event_id <= cursor:
                    continue
                yield message.encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
