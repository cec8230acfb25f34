"""Register the worker in the store when it is ready, renew its heartbeat, remove it at the end.

The workers page and `GET /api/workers` read these rows, and the designer
offers the devices whose queues a live worker consumes. A daemon thread in the
worker's main process renews the heartbeat every `WORKER_HEARTBEAT_SECONDS`.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.exc import SQLAlchemyError

from biaslab.queue import DEFAULT_QUEUE
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.workers import (
    WORKER_HEARTBEAT_SECONDS,
    WorkerInfo,
    register_worker,
    unregister_worker,
    worker_heartbeat,
)

logger = logging.getLogger(__name__)


class WorkerPresence:
    """Keep the worker's row in the store alive while the worker runs."""

    def __init__(self, settings: Settings, device: str) -> None:
        self._settings = settings
        self._device = device
        self._info: WorkerInfo | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str, queues: list[str]) -> None:
        if self._thread is not None:
            return
        self._info = WorkerInfo(
            name=name, host=socket.gethostname(), device=self._device, queues=queues
        )
        self._thread = threading.Thread(target=self._loop, name="biaslab-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is None or self._info is None:
            return
        self._thread.join(timeout=WORKER_HEARTBEAT_SECONDS)
        engine = make_engine(self._settings.resolved_database_url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                unregister_worker(session, self._info.name)
            logger.info("worker %s removed from the workers list", self._info.name)
        except SQLAlchemyError:
            logger.warning("removing worker %s from the store failed", self._info.name)
        finally:
            engine.dispose()

    def _loop(self) -> None:
        assert self._info is not None
        # The engine belongs to this thread; its connections are closed after each
        # beat, so pool processes forked later inherit no open connection.
        engine = make_engine(self._settings.resolved_database_url)
        sessions = make_sessionmaker(engine)
        registered = False
        try:
            while not self._stopping.is_set():
                try:
                    with session_scope(sessions) as session:
                        if not registered or not worker_heartbeat(session, self._info.name):
                            register_worker(session, self._info)
                            if not registered:
                                logger.info(
                                    "worker %s registered: device %s, queues %s",
                                    self._info.name,
                                    self._info.device,
                                    ",".join(self._info.queues),
                                )
                            registered = True
                except SQLAlchemyError:
                    logger.warning(
                        "worker heartbeat failed; next try in %.0f s",
                        WORKER_HEARTBEAT_SECONDS,
                        exc_info=True,
                    )
                finally:
                    engine.dispose()
                self._stopping.wait(WORKER_HEARTBEAT_SECONDS)
        finally:
            engine.dispose()


def install_presence(app: Celery, settings: Settings, device: str) -> WorkerPresence:
    """Register `app`'s worker when it is ready and remove it when it shuts down."""
    presence = WorkerPresence(settings, device)

    def start(sender: Any, **_: Any) -> None:
        if sender.app is app:
            queues = list(app.amqp.queues.consume_from or {}) or [DEFAULT_QUEUE]
            presence.start(sender.hostname, queues)

    def stop(sender: Any, **_: Any) -> None:
        if sender.app is app:
            presence.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
    return presence
