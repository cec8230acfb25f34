"""The worker that `biaslab serve` runs beside the API, as a child process.

The worker is started and stopped by the app's lifespan, which uvicorn runs
on SIGINT and SIGTERM. On Linux the child also gets SIGTERM when the server
process dies without a shutdown (SIGKILL), so no orphan keeps training.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys

logger = logging.getLogger(__name__)

STOP_SECONDS = 10
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
