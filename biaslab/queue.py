"""Celery settings shared by the API (which sends) and the worker (which runs).

Broker messages carry only a run id. The store, not the broker, is the truth
about runs: see `biaslab.store.runs` for the lease that makes redelivery safe.

Runs wait on one queue per device: `cpu`, or `gpu` for the workers started
with `biaslab worker --queues gpu`. A run's queue is its spec's
`training.device`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biaslab.settings import Settings

TRAIN_RUN_TASK = "biaslab.train_run"
# Longer than any run, so Redis never hands a running task to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 7 * 24 * 3600

QUEUES = ("cpu", "gpu")
# The queue a worker consumes without --queues, and of specs stored before runs chose one.
DEFAULT_QUEUE = "cpu"


def queue_of(spec: Mapping[str, Any]) -> str:
    """Return the queue of a run from its stored spec (a `RunSpec` dumped to JSON)."""
    training = spec.get("training")
    device = training.get("device") if isinstance(training, Mapping) else None
    return device if device in QUEUES else DEFAULT_QUEUE


def parse_queues(text: str) -> list[str]:
    """Parse a comma-separated list of queues such as "cpu,gpu"; raise ValueError on a bad name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"queues {text!r} name no queue; use {' or '.join(QUEUES)}")
    for name in names:
        if name not in QUEUES:
            raise ValueError(f"queue {name!r} is unknown; use {', '.join(QUEUES)}")
    return list(dict.fromkeys(names))


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.resolved_broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": (
            {}
            if settings.uses_embedded_broker
            else {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
        ),
        "task_default_queue": DEFAULT_QUEUE,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
    }
