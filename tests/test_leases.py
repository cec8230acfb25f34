"""Run leases: the lease keeper thread, and how often the sweep sends a lost run again.

The keeper tests run it in this process on SQLite. The worker tests run real
`python -m worker` processes on the embedded store and broker, with a lease of
a few seconds, and use the fixtures of `tests.test_worker_integration`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from celery import Celery
from kombu import Connection
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from biaslab.design import StudyCreate
from biaslab.queue import TRAIN_RUN_TASK, celery_config
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Event, EventKind, Run, RunStatus, Snapshot, utcnow
from biaslab.store.runs import claim_run, runs_to_resend
from tests import test_worker_integration
from tests.test_worker_integration import TINY_STUDY, create_run, load_run
from worker.lease_keeper import LeaseKeeper, LeaseRenewalError
from worker.sweep import RunSweeper

# The worker fixtures, which pytest finds by name; `settings` below replaces theirs.
sessions = test_worker_integration.sessions
sender = test_worker_integration.sender
start_worker = test_worker_integration.start_worker

logger = logging.getLogger(__name__)

OWNER = "host:1:task"
WAIT_SECONDS = 10.0


# ---- The lease keeper, in this process ----


@pytest.fixture
def store(tmp_path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'leases.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def claimed_run(store: sessionmaker[Session], lease_seconds: float, owner: str = OWNER) -> int:
    """Create a run and claim it for `owner` with a lease of `lease_seconds`."""
    _, run_id = create_run(store, StudyCreate.model_validate(TINY_STUDY))
    with session_scope(store) as session:
        assert claim_run(session, run_id, owner, lease_seconds, "cpu", "host") is not None
    return run_id


def lease_expired(store: sessionmaker[Session], run_id: int) -> bool:
    """Return True when the sweep would send run `run_id` again: running with an expired lease."""
    with session_scope(store) as session:
        return run_id in runs_to_resend(session, utcnow(), include_queued=False)


def wait_until(check: Callable[[], bool], description: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{description} after {timeout} s")
        time.sleep(0.05)


def keeper_for(
    store: sessionmaker[Session], run_id: int, lease_seconds: float, heartbeat_seconds: float
) -> LeaseKeeper:
    return LeaseKeeper(store, run_id, OWNER, lease_seconds, heartbeat_seconds, logger)


def test_keeper_renews_lease_until_stopped(store):
    run_id = claimed_run(store, lease_seconds=1.0)
    keeper = keeper_for(store, run_id, lease_seconds=1.0, heartbeat_seconds=0.2)
    keeper.start()
    try:
        # This thread does no step at all, as during a long snapshot.
        for _ in range(10):
            time.sleep(0.25)
            assert not lease_expired(store, run_id), "the keeper let the lease expire"
    finally:
        keeper.stop()

    assert not keeper.must_stop
    time.sleep(1.2)
    assert lease_expired(store, run_id), "the lease was renewed after stop"


def test_keeper_skips_renewal_after_step_heartbeat(store):
    run_id = claimed_run(store, lease_seconds=60.0)
    claimed_until = load_run(store, run_id).lease_expires_at
    keeper = keeper_for(store, run_id, lease_seconds=60.0, heartbeat_seconds=0.4)
    keeper.start()
    try:
        # Step heartbeats come a little over a heartbeat apart.
        keeper.note_renewed()
        for _ in range(5):
            time.sleep(0.44)
            keeper.note_renewed()
        assert load_run(store, run_id).lease_expires_at == claimed_until, "the keeper renewed"
        wait_until(
            lambda: load_run(store, run_id).lease_expires_at != claimed_until,
            "no renewal once the step heartbeat went quiet",
        )
    finally:
        keeper.stop()


def test_keeper_reports_cancel_and_keeps_lease(store):
    run_id = claimed_run(store, lease_seconds=1.0)
    keeper = keeper_for(store, run_id, lease_seconds=1.0, heartbeat_seconds=0.2)
    keeper.start()
    try:
        with session_scope(store) as session:
            session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
        wait_until(lambda: keeper.must_stop, "the keeper did not report the cancel request")
        assert not keeper.lease_lost
        time.sleep(1.2)
        assert not lease_expired(store, run_id), "the lease lapsed before the run was recorded"
    finally:
        keeper.stop()


def test_keeper_reports_lost_lease(store):
    run_id = claimed_run(store, lease_seconds=60.0)
    with session_scope(store) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        assert claim_run(session, run_id, "other:2:task", 60.0, "cpu", "other") is not None
    keeper = keeper_for(store, run_id, lease_seconds=60.0, heartbeat_seconds=0.1)
    keeper.start()
    try:
        wait_until(lambda: keeper.must_stop, "the keeper did not report the lost lease")
    finally:
        keeper.stop()

    assert keeper.lease_lost
    assert load_run(store, run_id).lease_owner == "other:2:task"


def test_keeper_failure_raised_to_loop(store):
    run_id = claimed_run(store, lease_seconds=60.0)
    with session_scope(store) as session:
        # An error of the statement, not of the connection: it is not retried.
        session.execute(
            text(
                "CREATE TRIGGER reject_renewal BEFORE UPDATE OF lease_expires_at ON runs "
                "BEGIN SELECT RAISE(ABORT, 'renewal rejected by trigger'); END"
            )
        )
    keeper = keeper_for(store, run_id, lease_seconds=60.0, heartbeat_seconds=0.1)
    keeper.start()
    try:
        wait_until(lambda: keeper_failed(keeper), "the keeper did not fail")
    finally:
        keeper.stop()

    with pytest.raises(LeaseRenewalError) as raised:
        keeper.raise_if_failed()
    assert str(raised.value).startswith("renewing the lease failed: IntegrityError")
    assert "renewal rejected by trigger" in str(raised.value)
    assert not keeper.must_stop, "a failure fails the run; it does not cancel it"


def test_keeper_retries_while_database_unreachable(caplog):
    # Nothing listens on port 1 of the loopback address, so every connection is refused.
    engine = make_engine("postgresql+psycopg://biaslab@127.0.0.1:1/biaslab")
    keeper = LeaseKeeper(make_sessionmaker(engine), 1, OWNER, 60.0, 0.05, logger)

    def logged_attempts() -> list[int]:
        return [
            int(match.group(1))
            for record in caplog.records
            if (match := re.search(r"renewing the lease failed \(attempt (\d+)", record.message))
        ]

    with caplog.at_level(logging.WARNING, logger=__name__):
        keeper.start()
        try:
            wait_until(lambda: 8 in logged_attempts(), "no 8th renewal attempt was logged")
        finally:
            keeper.stop()
    engine.dispose()

    attempts = logged_attempts()
    assert attempts[:4] == [1, 2, 4, 8], "repeated failures are logged at powers of two"
    assert all(attempt & (attempt - 1) == 0 for attempt in attempts), attempts
    assert not keeper_failed(keeper), "an unreachable database does not fail the run"
    assert not keeper.must_stop


def keeper_failed(keeper: LeaseKeeper) -> bool:
    try:
        keeper.raise_if_failed()
    except LeaseRenewalError:
        return True
    return False


# ---- The sweep, with a clock of the test's own ----


def test_sweep_sends_a_run_once_per_lease(store, tmp_path):
    lease = 10.0
    settings = Settings(data_dir=tmp_path, lease_seconds=lease)
    lost = claimed_run(store, lease_seconds=60.0, owner="dead:1:task")
    expire_lease(store, lost)
    now = [1000.0]
    app = Celery("lease-sweep-test")
    app.conf.update(celery_config(settings))
    sweeper = RunSweeper(app, settings, interval_seconds=lease / 2, clock=lambda: now[0])
    try:
        sent = []
        for offset in (0.0, 0.5, 0.99, 1.0, 1.5, 2.0):
            now[0] = 1000.0 + offset * lease
            sent.append(sweeper.sweep_once(store))

        # A worker claims it, so the sweep drops its send time and sends it at once when it is
        # lost again.
        with session_scope(store) as session:
            assert claim_run(session, lost, "live:2:task", 60.0, "cpu", "host") is not None
        now[0] += 0.1 * lease
        sent.append(sweeper.sweep_once(store))
        expire_lease(store, lost)
        now[0] += 0.1 * lease
        sent.append(sweeper.sweep_once(store))
    finally:
        app.close()

    assert sent == [[lost], [], [], [lost], [], [lost], [], [lost]]
    assert queue_size(settings, "cpu") == 4


def expire_lease(store: sessionmaker[Session], run_id: int) -> None:
    with session_scope(store) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def queue_size(settings: Settings, queue: str) -> int:
    with Connection(settings.resolved_broker_url) as connection:
        return connection.default_channel.queue_declare(queue=queue).message_count


# ---- Real workers ----

LEASE_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"
# PixelCNN samples one pixel at a time: 1,024 network passes per 32x32 snapshot.
# On one torch thread of a 2-core machine at a load average of 3.5, the claim
# to snapshot 1 took 13 s (4 s of it rendering the training set), and snapshot
# 2 took 6 s. The test checks that both outlast the lease.
SLOW_SNAPSHOT_STUDY = {
    "name": "slow snapshots",
    "dataset": {"family": "dots", "image_size": 32, "counts": [1, 3]},
    "model": {"kind": "pixelcnn", "architecture": "conv_small"},
    "training": {
        "steps": 2,
        "batch_size": 16,
        "snapshot_every": 1,
        "samples_per_snapshot": 128,
        "seed": 1,
    },
}
WORKER_ENV = {"BIASLAB_LEASE_SECONDS": str(LEASE_SECONDS), "BIASLAB_TORCH_THREADS": "1"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    """The embedded store and broker, with a lease of a few seconds."""
    settings = Settings(
        data_dir=tmp_path / "data",
        device="cpu",
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    return settings


def claims_logged(log: str, run_id: int) -> int:
    return len(re.findall(rf"run {run_id} study \d+: claimed by ", log))


def test_slow_snapshots_keep_the_lease(settings, sessions, sender, start_worker):
    workers = [start_worker(**WORKER_ENV), start_worker(**WORKER_ENV)]
    _, run_id = create_run(sessions, StudyCreate.model_validate(SLOW_SNAPSHOT_STUDY))
    sender.send_task(TRAIN_RUN_TASK, args=[run_id])

    # Watch the lease as the sweep does, until the run ends.
    expired_at_steps = []
    deadline = time.monotonic() + 120
    while not (run := load_run(sessions, run_id)).status.is_terminal:
        if lease_expired(sessions, run_id):
            expired_at_steps.append(run.step)
        assert time.monotonic() < deadline, f"run {run_id} still {run.status.value}"
        time.sleep(0.2)

    # SIGKILL: a warm shutdown of an idle worker takes seconds, and nothing is left to check.
    for worker in workers:
        worker.kill()
    logs = [worker.log() for worker in workers]
    assert run.status is RunStatus.succeeded, run.error
    assert expired_at_steps == [], "the lease expired while the worker trained the run"
    assert sum(claims_logged(log, run_id) for log in logs) == 1, "the run was claimed twice"
    assert not any("sweep sent runs" in log for log in logs), "the sweep sent the live run"

    with session_scope(sessions) as session:
        snapshots = session.execute(
            select(Snapshot.id, Snapshot.step, Snapshot.created_at)
            .where(Snapshot.run_id == run_id)
            .order_by(Snapshot.step)
        ).all()
        events = session.scalars(
            select(Event.snapshot_id).where(
                Event.run_id == run_id, Event.kind == EventKind.snapshot
            )
        ).all()
    assert [step for _, step, _ in snapshots] == [1, 2]
    assert sorted(events) == sorted(snapshot_id for snapshot_id, _, _ in snapshots), (
        "each snapshot was written once"
    )
    assert not any("is already stored" in log for log in logs)

    # Without the keeper the lease would have expired: from the claim to the first
    # snapshot no step heartbeat runs, and between the snapshots only one.
    first, second = (created_at for _, _, created_at in snapshots)
    assert run.started_at is not None
    assert (first - run.started_at).total_seconds() > LEASE_SECONDS, "snapshot 1 was too quick"
    assert (second - first).total_seconds() > LEASE_SECONDS, "snapshot 2 was too quick"


def test_sweep_resends_lost_run_once_per_lease(settings, sessions, start_worker):
    # A run whose GPU worker died, with no GPU worker left to take its messages.
    design = StudyCreate.model_validate(
        {**TINY_STUDY, "training": {**TINY_STUDY["training"], "device": "gpu"}}
    )
    _, run_id = create_run(sessions, design)
    with session_scope(sessions) as session:
        assert claim_run(session, run_id, "dead:1:task", 60.0, "cuda", "gone") is not None
    expire_lease(sessions, run_id)

    worker = start_worker(**WORKER_ENV)
    sends: list[str] = []

    def four_sends() -> bool:
        sends[:] = re.findall(
            rf"^(\S+ \S+) .*sweep sent runs \[{run_id}\] again", worker.log(), re.MULTILINE
        )
        return len(sends) >= 4

    wait_until(four_sends, "the sweep sent the lost run fewer than 4 times", timeout=30)
    worker.kill()  # the sweep stops with it, so the messages can be counted
    four_sends()

    times = [datetime.strptime(stamp, LOG_TIME_FORMAT) for stamp in sends]
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    # The sweep runs every half lease and logs at the end of a pass. So a gap
    # between log lines may fall short of a lease by the difference of two passes' durations.
    assert all(gap >= 0.8 * LEASE_SECONDS for gap in gaps), f"gaps between sends: {gaps}"
    assert queue_size(settings, "gpu") == len(sends), "one message per logged send"
