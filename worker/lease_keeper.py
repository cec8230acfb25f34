"""Renew a claimed run's lease from a thread of its own, whatever the training is doing.

The training loop reaches its step callbacks only between steps. Before step 1
it renders the training set and stores its histograms, and at a snapshot it
samples and probes the model. Each of these can take longer than a lease (a
PixelCNN snapshot samples one pixel at a time). A lease renewed only between
steps then expires, the sweep sends the run again, and a second worker trains
it too. So a `LeaseKeeper` thread renews the lease every `heartbeat_seconds`
from the claim until the attempt ends.

The thread is a daemon thread of the pool process that trains the run, so a
worker killed with SIGKILL stops renewing at once and its lease expires as
before. NOTE: a training that hangs without dying keeps its lease as long as
its process lives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from biaslab.store.db import session_scope
from biaslab.store.retry import is_outage
from biaslab.store.runs import renew_lease

# How long `stop` waits for a renewal in flight, such as a connection attempt
# to a database that does not respond.
STOP_TIMEOUT_SECONDS = 10.0
# After a step heartbeat renewed the lease, the keeper waits this many heartbeats
# before it renews. The next step heartbeat comes a little over one heartbeat
# later, so a keeper that waited only one would renew at the same time.
STEP_RENEWAL_WAIT_HEARTBEATS = 1.5


class LeaseRenewalError(RuntimeError):
    """Renewing the lease failed with an error other than an unreachable database."""


class LeaseKeeper:
    """A daemon thread that renews one run's lease every `heartbeat_seconds` until stopped.

    Each renewal is one short transaction in a session of its own. While the
    database is unreachable, a renewal is tried again every `heartbeat_seconds`,
    as the step heartbeat does, because the lease outlives several missed ones.

    The loop's step heartbeat renews the lease too and then calls `note_renewed`.
    The keeper then skips its own renewal until STEP_RENEWAL_WAIT_HEARTBEATS
    heartbeats after that. So a run whose steps take less than half a heartbeat
    costs no extra writes, and when the steps stop (a snapshot starts), the
    keeper renews within 1.5 heartbeats of the last step heartbeat.

    `must_stop` becomes True when the keeper finds a cancel request or a lost
    lease. After a lost lease it stops renewing, and after a cancel request it
    keeps renewing until `stop`, so the lease lives until the run is recorded as
    cancelled. Any other error ends the thread, and `raise_if_failed` raises it
    as LeaseRenewalError.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: int,
        owner: str,
        lease_seconds: float,
        heartbeat_seconds: float,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._run_id = run_id
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._log = log
        self._clock = clock
        # (clock, whether the step heartbeat renewed) of the last renewal, in one
        # tuple so that the two threads read and write both at once. The claim
        # set the lease just before the keeper was made.
        self._last_renewal = (clock(), False)
        self._last_attempt = self._last_renewal[0]
        self._failed_attempts = 0
        self._cancel_requested = False
        self._lease_lost = False
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def must_stop(self) -> bool:
        """True once the keeper found a cancel request or that the lease was lost."""
        return self._cancel_requested or self._lease_lost

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost

    def start(self) -> None:
        """Start renewing in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"biaslab-lease-{self._run_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing, and wait up to STOP_TIMEOUT_SECONDS for a renewal in flight."""
        self._stopping.set()
        if self._thread is None:
            return
        self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            self._log.warning(
                "the lease keeper did not stop within %.0f s; its last renewal is still running",
                STOP_TIMEOUT_SECONDS,
            )

    def note_renewed(self) -> None:
        """Record that the step heartbeat renewed the lease just now."""
        self._last_renewal = (self._clock(), True)

    def raise_if_failed(self) -> None:
        """Raise LeaseRenewalError when the keeper ended on an error it could not retry."""
        if self._failure is not None:
            reason = " ".join(f"{type(self._failure).__name__}: {self._failure}".split())
            raise LeaseRenewalError(f"renewing the lease failed: {reason}") from self._failure

    def renew_once(self) -> bool:
        """Renew the lease once; return False when the lease was lost and renewing is over."""
        self._last_attempt = self._clock()
        try:
            with session_scope(self._sessions) as session:
                cancel_requested = renew_lease(
                    session, self._run_id, self._owner, self._lease_seconds
                )
        except DBAPIError as error:
            if not is_outage(error):
                raise
            self._failed_attempts += 1
            # Logged at attempts 1, 2, 4, 8, ..., with the traceback only at the
            # first, so an outage of minutes adds a few lines rather than hundreds.
            attempts = self._failed_attempts
            if attempts & (attempts - 1) == 0:
                self._log.warning(
                    "renewing the lease failed (attempt %d, database unreachable); "
                    "retrying every %.1f s",
                    attempts,
                    self._heartbeat_seconds,
                    exc_info=attempts == 1,
                )
            return True

        if self._failed_attempts:
            self._log.info("lease renewed again after %d failed attempts", self._failed_attempts)
            self._failed_attempts = 0
        if cancel_requested is None:
            self._lease_lost = True
            self._log.warning(
                "lease %s was lost; training stops after the current step", self._owner
            )
            return False
        self._last_renewal = (self._clock(), False)
        if cancel_requested and not self._cancel_requested:
            self._cancel_requested = True
            self._log.info("cancel requested; training stops after the current step")
        return True

    def _run(self) -> None:
        try:
            while True:
                due = self._next_renewal()
                if self._stopping.wait(max(0.0, due - self._clock())):
                    return
                if self._clock() < self._next_renewal():
                    continue  # the step heartbeat renewed the lease meanwhile
                if not self.renew_once():
                    return
        except Exception as error:  # reported to the training loop, which fails the run
            self._failure = error
            self._log.exception("renewing the lease failed; the run fails at its next step")

    def _next_renewal(self) -> float:
        """Return the clock time at which the keeper renews next, unless the step heartbeat does."""
        renewed_at, by_step = self._last_renewal
        wait = self._heartbeat_seconds * (STEP_RENEWAL_WAIT_HEARTBEATS if by_step else 1.0)
        return max(renewed_at + wait, self._last_attempt + self._heartbeat_seconds)
