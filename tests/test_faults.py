"""Faults a lab server survives, caused for real: killed workers, Redis and PostgreSQL restarts.

Each test runs real `python -m worker` processes on a PostgreSQL database of
its own and a Redis database number of its own. The Redis and PostgreSQL tests
stop and start the local servers (127.0.0.1), so every other client of those
servers is cut off too: run them alone (`pytest -m faults`), or leave them
out with `-m "not faults"`. A finalizer starts a stopped server again, even
when the test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.queue import RunQueue
from biaslab.queue import DEFAULT_QUEUE
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Event, EventKind, Metric, Run, RunStatus, Snapshot
from tests.conftest import NO_SERVICES, POSTGRES_SERVER_URL, REDIS_URL
from tests.test_worker_integration import (
    WorkerProcess,
    create_run,
    load_run,
    resume_steps,
    study_design,
    wait_for_run,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# A database number apart from the other tests', which flush theirs.
FAULTS_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/7"
REDIS_START_COMMAND = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1 -::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
SERVICE_TIMEOUT_SECONDS = 60
# Short, so that an orphaned run is sent again within seconds (the sweep runs every half lease).
SHORT_LEASE_SECONDS = 4.0
KILLS = 10


# ---- The local servers ----


def _wait(check: Callable[[], bool], description: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{description} after {timeout} s")
        time.sleep(0.2)


def _redis_up() -> bool:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def start_redis() -> None:
    if not _redis_up():
        subprocess.run(REDIS_START_COMMAND, check=True, timeout=SERVICE_TIMEOUT_SECONDS)
        _wait(_redis_up, "Redis did not answer", SERVICE_TIMEOUT_SECONDS)


def stop_redis() -> None:
    """Stop Redis without saving: it keeps nothing on disk, so it starts again empty."""
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
        check=False,
        capture_output=True,
        timeout=SERVICE_TIMEOUT_SECONDS,
    )
    _wait(lambda: not _redis_up(), "Redis still answered", SERVICE_TIMEOUT_SECONDS)


def _postgres_up() -> bool:
    result = subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False, timeout=30
    )
    return result.returncode == 0


def _pg_ctlcluster(action: str, *options: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *options],
        check=True,
        capture_output=True,
        timeout=SERVICE_TIMEOUT_SECONDS,
    )


def stop_postgres() -> None:
    # Fast: open connections are closed at once, as when a server goes down.
    _pg_ctlcluster("stop", "-m", "fast")
    _wait(lambda: not _postgres_up(), "PostgreSQL still answered", SERVICE_TIMEOUT_SECONDS)


def start_postgres() -> None:
    if not _postgres_up():
        _pg_ctlcluster("start")
        _wait(_postgres_up, "PostgreSQL did not answer", SERVICE_TIMEOUT_SECONDS)


def _require_local(url: str, port: int) -> None:
    parsed = make_url(url.replace("redis://", "redis+x://"))
    if parsed.host not in ("127.0.0.1", "localhost") or (parsed.port or port) != port:
        pytest.skip(f"the fault tests restart local servers only, not {parsed.host}:{parsed.port}")


@pytest.fixture
def redis_outage(redis_broker: str) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """Let the test stop and start the local Redis; it is running again afterwards."""
    _require_local(redis_broker, 6379)
    yield stop_redis, start_redis
    start_redis()


@pytest.fixture
def postgres_outage(database_url: str) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """Let the test stop and start the local PostgreSQL; it is running again afterwards."""
    _require_local(database_url.replace("postgresql+psycopg", "postgresql"), 5432)
    yield stop_postgres, start_postgres
    start_postgres()


# ---- Workers on PostgreSQL and Redis ----


@pytest.fixture
def database_url() -> Iterator[str]:
    """An empty database of this test's own, dropped afterwards even after a server restart."""
    if NO_SERVICES:
        pytest.skip("BIASLAB_TEST_NO_SERVICES=1: PostgreSQL and Redis tests are skipped")
    name = f"biaslab_faults_{uuid.uuid4().hex[:12]}"
    # Pre-ping: the restart test closes the connection this engine pooled before it.
    admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        start_postgres()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_broker() -> str:
    if NO_SERVICES:
        pytest.skip("BIASLAB_TEST_NO_SERVICES=1: PostgreSQL and Redis tests are skipped")
    client = redis.Redis.from_url(FAULTS_REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {FAULTS_REDIS_URL} is not reachable ({error}); start it")
    finally:
        client.close()
    return FAULTS_REDIS_URL


@pytest.fixture
def settings(database_url: str, redis_broker: str, tmp_path: Path) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=redis_broker,
        device="cpu",
        heartbeat_seconds=0.5,
        lease_seconds=SHORT_LEASE_SECONDS,
    )
    settings.data_dir.mkdir(parents=True)
    upgrade(database_url)
    return settings


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on `settings`; kill the ones left at teardown and print every log."""
    workers: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        env = {"BIASLAB_LEASE_SECONDS": str(settings.lease_seconds), **env}
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers):02d}.log", **env)
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.kill()
    # pytest shows this output only when the test failed.
    for worker in workers:
        print(f"===== {worker.log_path.name} =====\n{worker.log()}")


def snapshot_rows(sessions: sessionmaker[Session], run_id: int) -> dict[int, int]:
    """Map each stored snapshot's step to its row id."""
    with session_scope(sessions) as session:
        rows = session.execute(
            select(Snapshot.step, Snapshot.id).where(Snapshot.run_id == run_id)
        ).all()
    return {step: snapshot_id for step, snapshot_id in rows}


def claims_logged(log: str, run_id: int) -> int:
    return len(re.findall(rf"run {run_id} study \d+: claimed by ", log))


def waiting_messages(broker_url: str) -> int:
    with Connection(broker_url) as connection:
        try:
            return connection.default_channel.queue_declare(
                queue=DEFAULT_QUEUE, passive=True
            ).message_count
        except connection.channel_errors:
            return 0  # Redis has no key for an empty queue


# ---- A worker killed again and again ----


@pytest.mark.timeout(900)
def test_run_survives_ten_worker_kills(settings, sessions, start_worker):
    """SIGKILL the worker 10 times during one run; it resumes each time and ends succeeded."""
    # Each kill needs one snapshot interval of progress plus the steps trained between
    # polls. 1,000 steps leave about 100 per kill, so a worker that races past its target
    # still leaves steps for the later kills.
    steps, every = 1000, 20
    _, run_id = create_run(sessions, study_design(steps=steps, snapshot_every=every, batch_size=8))
    queue = RunQueue(settings)
    try:
        with session_scope(sessions) as session:
            assert queue.send_runs([session.get(Run, run_id)])
    finally:
        queue.close()

    first_start = None
    resumed_from = 0
    previous_owner = None
    kept: dict[int, int] = {}  # snapshots that must never be written again: step -> row id
    workers = []
    for kill in range(KILLS):
        worker = start_worker()
        workers.append(worker)
        claimed = wait_for_run(
            sessions,
            run_id,
            lambda run, previous=previous_owner: (
                run.status is RunStatus.running and run.lease_owner not in (None, previous)
            ),
            f"claimed again after kill {kill}",
        )
        previous_owner = claimed.lease_owner
        first_start = first_start or claimed.started_at
        if kill > 0:
            _wait(lambda w=worker: resume_steps(w.log(), run_id) != [], "no resume logged", 60)
            logged = resume_steps(worker.log(), run_id)
            assert len(logged) == 1, f"worker {kill} resumed {logged}:\n{worker.log()}"
            assert logged[0] > resumed_from, "each worker resumed from a newer checkpoint"
            resumed_from = logged[0]
        # A checkpoint is written right after each snapshot, so once the run has
        # passed resume point + one snapshot interval, it has a newer checkpoint.
        target = resumed_from + every + 1
        progressed = wait_for_run(
            sessions,
            run_id,
            lambda run, target=target, owner=previous_owner: (
                (run.lease_owner == owner and run.step > target) or run.status.is_terminal
            ),
            f"past step {target} after kill {kill}",
        )
        assert not progressed.status.is_terminal, (
            f"run ended ({progressed.status.value} at step {progressed.step}) before kill {kill}"
        )
        worker.kill()
        at_kill = snapshot_rows(sessions, run_id)
        assert load_run(sessions, run_id).status is RunStatus.running, "killed mid-run"
        # Snapshots up to the newest checkpoint are never trained again.
        for step, snapshot_id in at_kill.items():
            if step <= resumed_from:
                kept.setdefault(step, snapshot_id)

    last = start_worker()
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended", timeout=600)

    assert run.status is RunStatus.succeeded, run.error
    assert run.step == steps
    assert run.started_at == first_start, "the run kept its first start time"
    final_resume = resume_steps(last.log(), run_id)
    assert len(final_resume) == 1, last.log()
    assert final_resume[0] > resumed_from, "the last worker resumed from a newer checkpoint"
    for step, snapshot_id in at_kill.items():
        if step <= final_resume[0]:
            kept.setdefault(step, snapshot_id)
    assert sum(claims_logged(worker.log(), run_id) for worker in [*workers, last]) == KILLS + 1

    final = snapshot_rows(sessions, run_id)
    assert sorted(final) == list(range(every, steps + 1, every)), "one snapshot per step"
    assert sorted(kept) == list(range(every, final_resume[0] + 1, every)), (
        "every snapshot up to the last resume point was seen before a kill"
    )
    for step, snapshot_id in kept.items():
        assert final[step] == snapshot_id, f"snapshot at step {step} was written again"
    with session_scope(sessions) as session:
        events = session.scalars(
            select(Event.snapshot_id).where(
                Event.run_id == run_id, Event.kind == EventKind.snapshot
            )
        ).all()
        loss_steps = session.scalars(
            select(Metric.step).where(Metric.run_id == run_id, Metric.name == "loss")
        ).all()
    assert sorted(events) == sorted(final.values()), "one event per stored snapshot"
    assert max(loss_steps) == steps


# ---- Redis restarted ----


@pytest.mark.timeout(600)
def test_redis_restart_loses_no_run(settings, sessions, start_worker, redis_outage):
    """Restart Redis with one run training and three queued; every run still ends succeeded."""
    stop, start = redis_outage
    # A lease that outlives the run's set-up under load, so the sweep leaves the running run alone.
    worker = start_worker(BIASLAB_LEASE_SECONDS="20")
    _, long_run = create_run(sessions, study_design(steps=200, snapshot_every=50))
    short_runs = [create_run(sessions, study_design(steps=30, snapshot_every=10))[1] for _ in "abc"]
    queue = RunQueue(settings)
    try:
        with session_scope(sessions) as session:
            runs = [session.get(Run, run_id) for run_id in (long_run, *short_runs)]
            assert queue.send_runs(runs)
        wait_for_run(sessions, long_run, lambda run: run.step > 0, "training")
        assert waiting_messages(settings.broker_url) == 3, "three runs wait in Redis"

        stop()
        try:
            # A run submitted while Redis is down is stored; the sweep sends it later.
            _, late_run = create_run(sessions, study_design(steps=30, snapshot_every=10))
            with session_scope(sessions) as session:
                assert not queue.send_runs([session.get(Run, late_run)]), "Redis was down"
        finally:
            start()
        assert waiting_messages(settings.broker_url) == 0, "the restart emptied Redis"
    finally:
        queue.close()

    for run_id in (long_run, *short_runs, late_run):
        run = wait_for_run(
            sessions, run_id, lambda run: run.status.is_terminal, "ended", timeout=300
        )
        assert run.status is RunStatus.succeeded, f"run {run_id}: {run.error}"
        assert claims_logged(worker.log(), run_id) == 1, f"run {run_id} was trained once"
    assert resume_steps(worker.log(), long_run) == [], "the running run kept training"
    swept = {
        int(run_id)
        for sent in re.findall(r"sweep sent runs \[([\d, ]+)\] again", worker.log())
        for run_id in sent.split(",")
    }
    assert {*short_runs, late_run} <= swept, f"the sweep sent the lost runs again: {swept}"


# ---- PostgreSQL restarted ----


@pytest.mark.timeout(600)
def test_postgres_restart_during_run(settings, sessions, start_worker, postgres_outage):
    """Stop PostgreSQL for a while during a run: the API returns 503, the worker retries."""
    stop, start = postgres_outage
    # A lease longer than the outage, so the run is not sent again meanwhile.
    worker = start_worker(BIASLAB_LEASE_SECONDS="60", BIASLAB_DATABASE_RETRY_SECONDS="120")
    study_id, run_id = create_run(sessions, study_design(steps=200, snapshot_every=20))
    api_settings = settings.model_copy(update={"lease_seconds": 60.0})
    with TestClient(create_app(api_settings)) as client:
        queue = RunQueue(settings)
        try:
            with session_scope(sessions) as session:
                assert queue.send_runs([session.get(Run, run_id)])
        finally:
            queue.close()
        wait_for_run(sessions, run_id, lambda run: run.step > 20, "past its first snapshot")

        stop()
        try:
            outage_started = time.monotonic()
            answers = [
                client.get(f"/api/studies/{study_id}"),
                client.get(f"/api/runs/{run_id}"),
                client.get("/api/workers"),
                client.post("/api/studies", json=study_design().model_dump(mode="json")),
            ]
            # Long enough for the worker to miss a few writes and heartbeats.
            time.sleep(max(0.0, 8.0 - (time.monotonic() - outage_started)))
        finally:
            start()

        for answer in answers:
            assert answer.status_code == 503, f"{answer.request.url}: {answer.text}"
            assert answer.headers["Retry-After"] == "5"
            assert answer.json() == {
                "detail": "the database is unavailable; retry in a few seconds"
            }
        recovered = client.get(f"/api/runs/{run_id}")
        assert recovered.status_code == 200, recovered.text

    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended", timeout=300)
    log = worker.log()
    assert run.status is RunStatus.succeeded, run.error
    assert claims_logged(log, run_id) == 1, "the run continued on its first claim"
    assert resume_steps(log, run_id) == []
    assert re.search(r"storing the \w+ .*failed \(attempt 1, database unreachable", log), (
        "the worker retried a write while the database was down"
    )
    assert sorted(snapshot_rows(sessions, run_id)) == list(range(20, 201, 20))
    with session_scope(sessions) as session:
        metric_rows = session.scalar(select(func.count(Metric.id)).where(Metric.run_id == run_id))
    assert metric_rows, "metrics were stored"
