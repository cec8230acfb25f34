"""The worker that `biaslab serve` runs beside the API, as a child process.

The worker is started and stopped by the app's lifespan, which uvicorn runs
on SIGINT and SIGTERM. On Linux the child also gets SIGTERM when the server
process dies without a shutdown (SIGKILL), so no orphan keeps training.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys

logger = logging.getLogger(__name__)

STOP_SECONDS = 10
CHECK_SECONDS = 2.0
RESTART_DELAY_SECONDS = 3.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # Not Linux: the lifespan shutdown still stops the worker.


def start_worker() -> subprocess.Popen[bytes]:
    # A session of its own, so that stopping it reaches the prefork pool children too.
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"], start_new_session=True, preexec_fn=_die_with_parent
    )
    logger.info("embedded worker started as process %s", process.pid)
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Stop the worker; the run it was training goes back to the queue and trains again later.

    SIGTERM goes to the worker's main process alone, which makes the training
    child stop after its current step and requeue the run. Only if that takes too
    long is the whole process group killed.
    """
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        logger.warning("embedded worker did not stop within %s s; killing it", STOP_SECONDS)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    logger.info("embedded worker stopped")


class WorkerSupervisor:
    """Keep one embedded worker alive: start it, restart it when it exits, stop it at the end.

    A worker killed mid-run leaves its run `running` until the lease expires; the
    restarted worker's sweep then sends the run again.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    def start(self) -> None:
        self._process = start_worker()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self._process is None or self._process.poll() is None:
                continue
            logger.error(
                "embedded worker (process %s) exited with code %s; restarting it in %s s",
                self._process.pid,
                self._process.returncode,
                RESTART_DELAY_SECONDS,
            )
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            self._process = start_worker()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._process is not None:
            stop_worker(self._process)
