"""Training callbacks that write a run's results through the store as the loop reports them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.artifacts import run_relative_dir
from biaslab.store.db import session_scope
from biaslab.store.retry import with_retry
from biaslab.store.runs import add_metrics, add_snapshot, heartbeat, save_training_histograms
from biaslab.training.callbacks import SnapshotData
from worker.lease_keeper import LeaseKeeper


def grid_relative_path(run_id: int, step: int) -> Path:
    """Return where a snapshot's sample grid goes, relative to the artifact folder."""
    return run_relative_dir(run_id) / f"step_{step:07d}.png"


def checkpoint_relative_path(run_id: int) -> Path:
    """Return where a run's latest checkpoint goes, relative to the artifact folder.

    Each checkpoint replaces the previous one, so the path depends on the run id
    alone and the store does not record it.
    """
    return run_relative_dir(run_id) / "checkpoint.pt"


class StoreCallbacks:
    """Write one run's histograms, metrics and snapshots, and its step and progress.

    `lease` renews the run's lease in a thread of its own, also while no step
    runs. `should_stop` runs after every step: it stops the run when `lease`
    found a cancel request or a lost lease, and raises LeaseRenewalError when
    `lease` failed. Every `heartbeat_seconds` it also records the step and
    progress, which renews the lease and checks for cancel too. It stops the
    run at once when `shutdown_requested` returns True. `stopped_for_shutdown`
    is then True, and the caller releases the run rather than ending it.

    Each write retries with back-off for up to `database_retry_seconds` while the
    database is unreachable, then raises StoreUnavailable, which fails the run.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: int,
        owner: str,
        steps: int,
        artifact_dir: Path,
        lease_seconds: float,
        heartbeat_seconds: float,
        log: logging.LoggerAdapter[logging.Logger],
        lease: LeaseKeeper,
        shutdown_requested: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        database_retry_seconds: float = 120.0,
    ) -> None:
        self._sessions = sessions
        self._run_id = run_id
        self._owner = owner
        self._steps = steps
        self._artifact_dir = artifact_dir
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._log = log
        self._lease = lease
        self._shutdown_requested = shutdown_requested
        self._clock = clock
        self._retry_seconds = database_retry_seconds
        self.stopped_for_shutdown = False
        # The claim set the lease just now, so the first heartbeat can wait.
        self._last_heartbeat = clock()

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        def write() -> None:
            with session_scope(self._sessions) as session:
                save_training_histograms(session, self._run_id, training_histograms)

        self._write(write, "storing the training histograms")
        self._log.info("training histograms stored; training on %s", device)

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        def write() -> None:
            with session_scope(self._sessions) as session:
                add_metrics(session, self._run_id, step, losses)

        self._write(write, f"storing the metrics at step {step}")

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        relative = grid_relative_path(self._run_id, snapshot.step)
        self._write_grid(relative, snapshot.grid_png)

        def write() -> None:
            with session_scope(self._sessions) as session:
                add_snapshot(
                    session,
                    self._run_id,
                    snapshot.step,
                    snapshot.histograms,
                    snapshot.losses,
                    relative.as_posix(),
                    snapshot.scores,
                )

        self._write(write, f"storing the snapshot at step {snapshot.step}")
        self._log.info("snapshot at step %d stored", snapshot.step)

    def should_stop(self, step: int) -> bool:
        if self._shutdown_requested():
            self._log.info("worker is shutting down; stopping after step %d", step)
            self.stopped_for_shutdown = True
            return True
        self._lease.raise_if_failed()
        if self._lease.must_stop:
            return True

        now = self._clock()
        if now - self._last_heartbeat < self._heartbeat_seconds:
            return False
        self._last_heartbeat = now
        try:
            with session_scope(self._sessions) as session:
                stop = heartbeat(
                    session, self._run_id, self._owner, step, self._steps, self._lease_seconds
                )
        except OperationalError:
            # A busy or briefly unreachable database: keep training, because the
            # lease outlives several missed heartbeats. The next one tries again.
            self._log.warning("heartbeat at step %d failed; retrying later", step, exc_info=True)
            return False
        if not stop:
            self._lease.note_renewed()
        return stop

    def _write(self, write: Callable[[], None], what: str) -> None:
        # Each write is one transaction that skips rows already stored, so a retry
        # after a commit whose acknowledgement was lost stores nothing twice.
        with_retry(write, what, self._retry_seconds, self._log)

    def _write_grid(self, relative: Path, png: bytes) -> None:
        # Written beside the target and renamed, so a reader never sees half a file.
        path = self._artifact_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".png.partial")
        partial.write_bytes(png)
        os.replace(partial, path)
