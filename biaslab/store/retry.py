"""Retry a unit of store work with back-off while the database is unreachable.

A restarted PostgreSQL server drops every connection, and refuses new ones for a
few seconds. The worker's writes are each one short transaction that is safe to
run again (a snapshot or metric already stored is skipped), so the worker waits
and tries again rather than failing a run that has trained for hours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0


class StoreUnavailable(RuntimeError):
    """The database stayed unreachable for longer than the retry limit."""


def is_outage(error: BaseException) -> bool:
    """Return True for errors of an unreachable database, not of a bad statement."""
    return isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def with_retry(
    work: Callable[[], T],
    what: str,
    max_seconds: float,
    log: logging.Logger | logging.LoggerAdapter[Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `work`; while the database is unreachable, retry with doubling delays.

    `what` names the work in messages ("storing the snapshot at step 40").
    Raises StoreUnavailable once `max_seconds` have passed without success;
    other errors propagate at once.
    """
    deadline = clock() + max_seconds
    delay = FIRST_DELAY_SECONDS
    attempt = 1
    while True:
        try:
            return work()
        except DBAPIError as error:
            if not is_outage(error):
                raise
            reason = " ".join(str(error.orig).split()) or type(error.orig).__name__
            remaining = deadline - clock()
            if remaining <= 0:
                raise StoreUnavailable(
                    f"the database was unreachable for {max_seconds:g} s while {what} "
                    f"({attempt} attempts); last error: {reason}"
                ) from error
            wait = min(delay, remaining)
            log.warning(
                "%s failed (attempt %d, database unreachable: %s); retrying in %.1f s",
                what,
                attempt,
                reason,
                wait,
            )
            sleep(wait)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
            attempt += 1
