"""The folders of the artifact root that hold each run's checkpoint and sample grids."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

RUNS_FOLDER = "runs"


def run_relative_dir(run_id: int) -> Path:
    """Return the folder of run `run_id`'s files, relative to the artifact root."""
    return Path(RUNS_FOLDER) / str(run_id)


def delete_run_artifacts(artifact_dir: Path, run_ids: Iterable[int]) -> list[int]:
    """Delete the folder of each run in `run_ids`; return the ids whose folder was deleted.

    A folder that cannot be deleted is logged and left in place. A worker
    refuses such a leftover checkpoint when the store reuses the run id
    (see `biaslab.store.runs.was_claimed_before`).
    """
    deleted: list[int] = []
    for run_id in run_ids:
        folder = artifact_dir / run_relative_dir(run_id)
        if not folder.exists():
            continue
        try:
            shutil.rmtree(folder)
        except OSError:
            logger.warning(
                "run %s: deleting its artifacts at %s failed", run_id, folder, exc_info=True
            )
            continue
        deleted.append(run_id)
    return deleted
