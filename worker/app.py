"""The worker's Celery app: configuration, the train-run task and the sweep.

`celery -A worker.app worker` finds `app` here; it is built on first access,
so importing this module reads no settings and creates no folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import make_url

from biaslab.queue import celery_config
from biaslab.settings import Settings
from worker.presence import install_presence
from worker.sweep import install_sweep
from worker.tasks import register_tasks

# Seconds between polls of the embedded broker for a new message; kombu's
# default of 1 s adds up to a second to every submit.
EMBEDDED_BROKER_POLL_SECONDS = 0.1


def make_celery(settings: Settings, device: str | None = None) -> Celery:
    """Build the worker's app: Celery settings, the train-run task, the sweep and presence.

    `device` describes what the worker trains on, for the workers page; the
    device setting itself when None.
    """
    app = Celery("biaslab")
    app.conf.update(celery_config(settings))
    if settings.uses_embedded_broker:
        prepare_embedded_broker(settings.resolved_broker_url)
    register_tasks(app, settings)
    install_sweep(app, settings)
    install_presence(app, settings, device or settings.device)
    return app


def prepare_embedded_broker(broker_url: str) -> None:
    """Create the folder of the SQLite broker file and shorten the broker's poll interval."""
    database = make_url(broker_url.removeprefix("sqla+")).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    # kombu 5.7's SQLAlchemy transport hands every broker_transport_options entry
    # to create_engine, so a polling_interval there raises TypeError. The
    # transport class's attribute is the one setting it reads instead.
    from kombu.transport import sqlalchemy as sqlalchemy_transport

    sqlalchemy_transport.Transport.polling_interval = EMBEDDED_BROKER_POLL_SECONDS


_default_app: Celery | None = None


def __getattr__(name: str) -> Any:
    # PEP 562: `worker.app.app` is built from the environment on first access.
    global _default_app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _default_app is None:
        _default_app = make_celery(Settings())
    return _default_app
