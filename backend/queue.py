"""Sends run ids to the workers by task name; the API never imports the worker or torch."""

from __future__ import annotations

import logging

from celery import Celery

from biaslab.queue import TRAIN_RUN_TASK, celery_config
from biaslab.settings import Settings

logger = logging.getLogger(__name__)


class RunQueue:
    def __init__(self, settings: Settings) -> None:
        if settings.uses_embedded_broker:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._celery = Celery("biaslab-api")
        self._celery.conf.update(celery_config(settings))

    def send(self, run_ids: list[int]) -> bool:
        """Send each run id; return False when the broker could not be reached.

        A run that was not sent stays queued in the store, and the workers'
        sweep sends it again, so a broker outage delays runs but loses none.
        """
        try:
            for run_id in run_ids:
                self._celery.send_task(TRAIN_RUN_TASK, args=[run_id])
        except Exception:  # kombu raises many transport-specific errors here
            logger.warning(
                "sending runs %s to the broker failed; the sweep will resend them",
                run_ids,
                exc_info=True,
            )
            return False
        return True

    def close(self) -> None:
        self._celery.close()
