"""Celery settings shared by the API (which sends) and the worker (which runs).

Broker messages carry only a run id. The store, not the broker, is the truth
about runs: see `biaslab.store.runs` for the lease that makes redelivery safe.
"""

from __future__ import annotations

from typing import Any

from biaslab.settings import Settings

TRAIN_RUN_TASK = "biaslab.train_run"
# Longer than any run, so Redis never hands a running task to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.resolved_broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": (
            {}
            if settings.uses_embedded_broker
            else {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
        ),
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
    }
