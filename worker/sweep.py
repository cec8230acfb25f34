"""Send runs again whose broker message may be lost, when the worker starts and periodically.

The store, not the broker, is the truth about runs. A message is lost when a
worker's main process dies with the message reserved, or when the API could not
reach the broker. The embedded broker then keeps the message invisible for good,
and Redis keeps it until the visibility timeout. The sweep sends such runs
again: running runs whose lease expired, and queued runs once no message waits
on the worker's queues. A message for a run that is running under a live lease,
or has ended, does nothing, so a duplicate costs one claim attempt.

Embedded mode has no Celery beat, so a daemon thread in the worker's main
process sweeps every half lease.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from biaslab.queue import TRAIN_RUN_TASK
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.models import utcnow
from biaslab.store.runs import runs_to_resend

logger = logging.getLogger(__name__)


class RunSweeper:
    """A daemon thread that sends lost runs again every `interval_seconds`."""

    def __init__(self, app: Celery, settings: Settings, interval_seconds: float) -> None:
        self._app = app
        self._settings = settings
        self._interval = interval_seconds
        self._queues: list[str] = [app.conf.task_default_queue]
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, queues: list[str]) -> None:
        """Start sweeping; runs are sent to the first of `queues`, which this worker consumes."""
        if self._thread is not None:
            return
        if queues:
            self._queues = queues
        self._thread = threading.Thread(target=self._loop, name="biaslab-sweep", daemon=True)
        self._thread.start()
        logger.info(
            "sweep started: every %.1f s, sending to queue %s", self._interval, self._queues[0]
        )

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
        """Send the runs whose message may be lost; return their ids."""
        try:
            pending = self._pending_messages()
            with session_scope(sessions) as session:
                run_ids = runs_to_resend(session, utcnow(), include_queued=pending == 0)
            for run_id in run_ids:
                self._app.send_task(TRAIN_RUN_TASK, args=[run_id], queue=self._queues[0])
        except (SQLAlchemyError, KombuError, OSError):
            logger.warning("sweep failed; next try in %.1f s", self._interval, exc_info=True)
            return []
        if run_ids:
            logger.info("sweep sent runs %s again (%s messages were waiting)", run_ids, pending)
        return run_ids

    def _pending_messages(self) -> int | None:
        """Count the messages waiting on this worker's queues; None when the broker fails."""
        with self._app.connection_for_write() as connection:
            errors = connection.connection_errors + connection.channel_errors
            try:
                return sum(self._queue_size(connection, name) for name in self._queues)
            except errors:
                logger.warning("counting waiting messages failed", exc_info=True)
                return None

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
            sweeper.start(list(app.amqp.queues.consume_from or {}))

    def stop(sender: Any, **_: Any) -> None:
        if sender.app is app:
            sweeper.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
    return sweeper
