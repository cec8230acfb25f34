"""Server-Sent Events of a study: run status changes and new snapshots, resumable by event id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
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
from biaslab.store.models import Study, User

router = APIRouter(prefix="/api/studies", tags=["events"])

KEEPALIVE_SECONDS = 15.0
# How long an idle stream waits between checks that its reader may still read the study.
# A stream also checks before each batch of messages it sends, because the owner may
# make the study private, an admin may disable the user, or the study may be deleted.
ACCESS_CHECK_SECONDS = 5.0
# Tells EventSource how long to wait before reconnecting.
RETRY_MILLISECONDS = 2000


def _readable_since(
    sessions: sessionmaker[Session], study_id: int, user: Principal | None
) -> datetime | None:
    """Return the study's creation time when `user` may read it, None otherwise.

    The creation time distinguishes a study from a later one that took its id.
    """
    with session_scope(sessions) as session:
        if user is not None:
            account = session.get(User, user.user_id)
            if account is None or account.disabled:
                return None
        study = session.get(Study, study_id)
        if study is None or not can_read(study, user):
            return None
        return study.created_at


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
    created_at = await run_in_threadpool(_readable_since, sessions, study_id, user)
    if created_at is None:
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
            loop = asyncio.get_running_loop()
            last_sent = loop.time()

            async def still_readable() -> bool:
                now = await run_in_threadpool(_readable_since, sessions, study_id, user)
                return now is not None and now == created_at

            while True:
                try:
                    first = await asyncio.wait_for(subscription.queue.get(), ACCESS_CHECK_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected() or not await still_readable():
                        return
                    if loop.time() - last_sent >= KEEPALIVE_SECONDS:
                        last_sent = loop.time()
                        yield ": keep-alive\n\n"
                    continue
                batch = [first]
                while not subscription.queue.empty():
                    batch.append(subscription.queue.get_nowait())
                if not await still_readable():
                    return
                for message in batch:
                    if message is CLOSED:
                        return
                    if message.event_id is not None and message.event_id <= cursor:
                        continue
                    last_sent = loop.time()
                    yield message.encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
