"""Sends run ids to the workers by task name; the API never imports the worker or torch."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery

from biaslab.queue import DEFAULT_QUEUE, TRAIN_RUN_TASK, celery_config, queue_of
from biaslab.settings import Settings
from biaslab.store.models import Run

logger = logging.getLogger(__name__)


class RunQueue:
    def __init__(self, settings: Settings) -> None:
        if settings.uses_embedded_broker:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._celery = Celery("biaslab-api")
        self._celery.conf.update(celery_config(settings))

    def send(self, run_ids: list[int], queue: str = DEFAULT_QUEUE) -> bool:
        """Send each run id to `queue`; return False when the broker could not be reached.

        A run that was not sent stays queued in the store, and the workers'
        sweep sends it again, so a broker outage delays runs but loses none.
        """
        try:
            for run_id in run_ids:
                self._celery.send_task(TRAIN_RUN_TASK, args=[run_id], queue=queue)
        except Exception:  # kombu raises many transport-specific errors here
            logger.warning(
                "sending runs %s to the broker failed; the sweep will resend them",
                run_ids,
                exc_info=True,
            )
            return False
        return True

    def send_runs(self, runs: Iterable[Run]) -> bool:
        """Send each run to the queue of the device its spec asks for (`training.device`)."""
        by_queue: dict[str, list[int]] = {}
        for run in runs:
            by_queue.setdefault(queue_of(run.spec), []).append(run.id)
        sent = [self.send(run_ids, queue) for queue, run_ids in by_queue.items()]
        return all(sent)

    def close(self) -> None:
        self._celery.close()
