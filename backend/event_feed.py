"""One reader of each watched study's events, shared by every stream open on that study.

A stream that read the database itself would poll for new events four times a
second and for progress once a second, and would render each snapshot event's
figures again. With 20 streams open on one study, that is 100 reads a second and
20 renderings of every snapshot. A `StudyFeed` does the reading and rendering
once per study and hands the same messages to each stream's queue.

A joining stream first reads from the database the events between its own
position and the feed's position when it joined. Everything after that comes
from the feed. A stream that falls too far behind is closed, and the browser's
reconnect with `Last-Event-ID` catches up from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.routes.runs import figures_public, run_public
from backend.schemas import SnapshotEvent, SnapshotPublic
from biaslab.store.db import session_scope
from biaslab.store.models import EventKind, Run, RunStatus, Snapshot, Study
from biaslab.store.studies import events_after, last_event_id

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
# How often running runs are checked for a new step, to move the progress bars.
PROGRESS_SECONDS = 1.0
# Messages a stream may have waiting before the feed closes it.
QUEUE_MESSAGES = 1000


@dataclass(frozen=True)
class Message:
    """One SSE message: an event with its id, or a progress report (no id)."""

    event_id: int | None
    name: str
    data: str

    def encode(self) -> str:
        if self.event_id is None:
            return f"event: {self.name}\ndata: {self.data}\n\n"
        return f"id: {self.event_id}\nevent: {self.name}\ndata: {self.data}\n\n"


# Put on a stream's queue when the feed stops: the stream ends, and the browser reconnects.
CLOSED = None


def load_messages(
    sessions: sessionmaker[Session], study_id: int, after_id: int, upto_id: int | None = None
) -> tuple[list[Message], int]:
    """Render the events after `after_id` (up to `upto_id`), with the last id read."""
    messages = []
    last_id = after_id
    with session_scope(sessions) as session:
        for event in events_after(session, study_id, after_id, upto_id=upto_id):
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
            messages.append(Message(event.id, event.kind.value, payload))
    return messages, last_id


def _load_progress(
    sessions: sessionmaker[Session], study_id: int, known_steps: dict[int, int]
) -> tuple[datetime, list[Message]] | None:
    """Return the study's creation time and a message for each running run whose step moved.

    Heartbeats update a run's step every few seconds without recording events,
    so progress is read from the runs themselves. Updates `known_steps` in place.
    Returns None when the study no longer exists.
    """
    moved = []
    with session_scope(sessions) as session:
        study = session.get(Study, study_id)
        if study is None:
            return None
        running = session.scalars(
            select(Run).where(Run.study_id == study_id, Run.status == RunStatus.running)
        ).all()
        for run in running:
            if known_steps.get(run.id) != run.step:
                known_steps[run.id] = run.step
                moved.append(Message(None, "run", run_public(session, run).model_dump_json()))
        running_ids = {run.id for run in running}
        created_at = study.created_at
    for run_id in set(known_steps) - running_ids:
        del known_steps[run_id]
    return created_at, moved


@dataclass
class Subscription:
    """A stream's place in a feed: messages after event `start` arrive on `queue`."""

    queue: asyncio.Queue[Message | None]
    start: int


@dataclass
class StudyFeed:
    """The reader of one study's new events and progress, shared by all of its streams."""

    sessions: sessionmaker[Session]
    study_id: int
    # The id of the last event read; every event up to it has gone to the streams.
    cursor: int
    queues: set[asyncio.Queue[Message | None]] = field(default_factory=set)
    # When the study was made: a study deleted and replaced under the same id ends the feed.
    created_at: datetime | None = None
    known_steps: dict[int, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def join(self) -> Subscription:
        # No saved progress is replayed: the run may have ended since it was read, and
        # its last event in the joiner's backlog is newer. Progress follows within a second.
        queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=QUEUE_MESSAGES)
        self.queues.add(queue)
        return Subscription(queue=queue, start=self.cursor)

    def leave(self, queue: asyncio.Queue[Message | None]) -> None:
        self.queues.discard(queue)

    def _publish(self, messages: list[Message]) -> None:
        for queue in list(self.queues):
            try:
                for message in messages:
                    queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning(
                    "study %s: an event stream fell %s messages behind, closing it",
                    self.study_id,
                    QUEUE_MESSAGES,
                )
                self._close(queue)

    def _close(self, queue: asyncio.Queue[Message | None]) -> None:
        self.queues.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(CLOSED)

    async def run(self) -> None:
        """Poll until no stream is left or the study is deleted, then close every stream.

        A database error closes every stream too, and browsers reconnect.
        """
        since_progress = PROGRESS_SECONDS
        try:
            while self.queues:
                messages, cursor = await run_in_threadpool(
                    load_messages, self.sessions, self.study_id, self.cursor
                )
                # The cursor moves in the same event-loop step as the messages go out,
                # so a joining stream gets a position that matches what it receives.
                self.cursor = cursor
                self._publish(messages)
                if messages:
                    continue
                if since_progress >= PROGRESS_SECONDS:
                    since_progress = 0.0
                    progress = await run_in_threadpool(
                        _load_progress, self.sessions, self.study_id, self.known_steps
                    )
                    if progress is None or progress[0] != self.created_at:
                        logger.info("study %s was deleted, closing its streams", self.study_id)
                        break
                    self._publish(progress[1])
                await asyncio.sleep(POLL_SECONDS)
                since_progress += POLL_SECONDS
        except Exception:
            logger.exception("study %s: reading events failed, closing its streams", self.study_id)
        for queue in list(self.queues):
            self._close(queue)


class EventFeeds:
    """The feeds of the studies that have streams open, started and stopped on demand."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._feeds: dict[int, StudyFeed] = {}
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def watch(self, study_id: int) -> AsyncIterator[Subscription]:
        """Join the study's feed, starting it if no stream watches the study yet."""
        async with self._lock:
            feed = self._feeds.get(study_id)
            cursor, created_at = await run_in_threadpool(self._position, study_id)
            # SQLite gives a new study the id of a deleted one. The deleted study's feed
            # ends within a second, so the new study gets a feed of its own.
            stale = feed is not None and feed.created_at != created_at
            if feed is None or stale or feed.task is None or feed.task.done():
                feed = StudyFeed(self._sessions, study_id, cursor, created_at=created_at)
                self._feeds[study_id] = feed
                subscription = feed.join()
                feed.task = asyncio.create_task(feed.run(), name=f"events of study {study_id}")
            else:
                subscription = feed.join()
        try:
            yield subscription
        finally:
            feed.leave(subscription.queue)
            if not feed.queues and self._feeds.get(study_id) is feed:
                del self._feeds[study_id]

    def _position(self, study_id: int) -> tuple[int, datetime | None]:
        """Return the study's newest event id and its creation time (None when deleted)."""
        with session_scope(self._sessions) as session:
            study = session.get(Study, study_id)
            created_at = study.created_at if study is not None else None
            return last_event_id(session, study_id), created_at

    async def close(self) -> None:
        """Stop every feed, as the server shuts down."""
        tasks = [feed.task for feed in self._feeds.values() if feed.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._feeds.clear()
