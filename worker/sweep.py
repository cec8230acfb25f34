"""Send runs again whose broker message may be lost, when the worker starts and periodically.

The store, not the broker, is the truth about runs. A message is lost when a
worker's main process dies with the message reserved, or when the API could not
reach the broker. The embedded broker then keeps the message invisible for good,
and Redis keeps it until the visibility timeout. The sweep sends such runs
again, each to the queue of the device it asks for: running runs whose lease
expired, and queued runs once no message waits on their queue. A message for a
run that is running under a live lease, or has ended, does nothing, so a
duplicate costs one claim attempt.

Embedded mode has no Celery beat, so a daemon thread in the worker's main
process sweeps every half lease. A sweep sends a given run again only when this
sweeper last sent it at least one lease ago, so a run that no worker takes (its
queue has no live worker, say) gets one message per lease from each worker, not
one per sweep. The send times live in memory: a run that stops being a
candidate (claimed under a live lease, or ended) is forgotten, so when it is
lost again later it is sent at the next sweep. A restarted worker sends at
once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu.exceptions import KombuError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from biaslab.queue import QUEUES, TRAIN_RUN_TASK, queue_of
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.models import Run, RunStatus, utcnow
from biaslab.store.runs import runs_to_resend

logger = logging.getLogger(__name__)


class RunSweeper:
    """A daemon thread that sends lost runs again every `interval_seconds`.

    It sends a given run at most once per `settings.lease_seconds`.
    """

    def __init__(
        self,
        app: Celery,
        settings: Settings,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._settings = settings
        self._interval = interval_seconds
        self._clock = clock
        # Run id -> the clock at the start of the sweep that last sent it.
        self._last_sent: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sweeping every `interval_seconds` in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="biaslab-sweep", daemon=True)
        self._thread.start()
        logger.info("sweep started: every %.1f s", self._interval)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval)
            logger.info("sweep stopped")

    def _loop(self) -> None:
        # The engine belongs to this thread; its connections are closed after each
        # pass, so pool processes forked later inherit no open connection.
        engine = make_engine(self._settings.resolved_database_url)
        sessions = make_sessionmaker(engine)
        try:
            while not self._stopping.is_set():
                try:
                    self.sweep_once(sessions)
                finally:
                    engine.dispose()
                self._stopping.wait(self._interval)
        finally:
            engine.dispose()

    def sweep_once(self, sessions: sessionmaker[Session]) -> list[int]:
        """Send the runs whose message may be lost, each to its device's queue; return their ids.

        A run that this sweeper sent less than a lease ago is left out.
        """
        started = self._clock()
        sent: list[int] = []
        try:
            pending = self._pending_messages()
            with session_scope(sessions) as session:
                candidates = runs_to_resend(session, utcnow())
                rows = session.execute(
                    select(Run.id, Run.status, Run.spec).where(Run.id.in_(candidates))
                ).all()
            self._forget_all_but(candidates)
            # A queued run is sent again only when no message waits on its queue:
            # one that waits may be the run's own.
            to_send = [
                (run_id, queue_of(spec))
                for run_id, status, spec in sorted(rows, key=lambda row: row[0])
                if (status is RunStatus.running or pending.get(queue_of(spec)) == 0)
                and self._due(run_id, started)
            ]
            for run_id, queue in to_send:
                self._app.send_task(TRAIN_RUN_TASK, args=[run_id], queue=queue)
                self._last_sent[run_id] = started
                sent.append(run_id)
        except (SQLAlchemyError, KombuError, OSError):
            logger.warning(
                "sweep failed after sending %d runs; next try in %.1f s",
                len(sent),
                self._interval,
                exc_info=True,
            )
            return sent
        if sent:
            logger.info(
                "sweep sent runs %s again (messages waiting: %s)",
                sent,
                ", ".join(f"{name} {count}" for name, count in pending.items()),
            )
        return sent

    def _due(self, run_id: int, now: float) -> bool:
        """Return True when this sweeper never sent `run_id`, or sent it a lease or more ago."""
        last_sent = self._last_sent.get(run_id)
        return last_sent is None or now - last_sent >= self._settings.lease_seconds

    def _forget_all_but(self, candidates: list[int]) -> None:
        """Drop the send times of runs that are no longer candidates for sending."""
        keep = set(candidates)
        self._last_sent = {
            run_id: sent_at for run_id, sent_at in self._last_sent.items() if run_id in keep
        }

    def _pending_messages(self) -> dict[str, int | None]:
        """Count the messages waiting on each queue; None for a queue the broker could not count."""
        with self._app.connection_for_write() as connection:
            errors = connection.connection_errors + connection.channel_errors
            counts: dict[str, int | None] = {}
            for name in QUEUES:
                try:
                    counts[name] = self._queue_size(connection, name)
                except errors:
                    logger.warning("counting waiting messages on %s failed", name, exc_info=True)
                    counts[name] = None
            return counts

    @staticmethod
    def _queue_size(connection: Any, name: str) -> int:
        channel = connection.default_channel
        try:
            return int(channel.queue_declare(queue=name, passive=True).message_count)
        except connection.channel_errors:
            # Redis has no key for an empty queue, so a passive declare of it fails.
            return 0


def install_sweep(app: Celery, settings: Settings) -> RunSweeper:
    """Start a sweep in the main process when `app`'s worker is ready; stop it at shutdown."""
    sweeper = RunSweeper(app, settings, interval_seconds=settings.lease_seconds / 2)

    def start(sender: Any, **_: Any) -> None:
        if sender.app is app:
            sweeper.start()

    def stop(sender: Any, **_: Any) -> None:
        if sender.app is app:
            sweeper.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
    return sweeper
