"""Device queues, the per-user limit on runs in flight, and the workers list, page and API.

The store tests run on SQLite and on PostgreSQL; the queue tests send real
messages through Redis; one test starts a real worker process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.queue import RunQueue
from biaslab.design import StudyCreate
from biaslab.queue import QUEUES, celery_config, parse_queues, queue_of
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Base, Event, Run, RunStatus, Worker, utcnow
from biaslab.store.runs import claim_run, finish_run, runs_waiting_for_slot
from biaslab.store.studies import create_study
from biaslab.store.users import create_user
from biaslab.store.workers import (
    WORKER_ALIVE_SECONDS,
    WORKER_FORGET_SECONDS,
    WorkerInfo,
    available_devices,
    is_alive,
    list_workers,
    register_worker,
    set_current_run,
    unregister_worker,
    worker_heartbeat,
)
from tests.test_worker_integration import (
    READY_TIMEOUT_SECONDS,
    REPO_ROOT,
    WorkerProcess,
    wait_for_run,
)
from worker.__main__ import check_start_up, parse_args
from worker.sweep import RunSweeper

LEASE_SECONDS = 60.0
STUDY = {
    "name": "queues",
    "dataset": {"family": "dots", "image_size": 32, "counts": [1, 3]},
    "model": {"kind": "vae"},
    "training": {"steps": 30, "batch_size": 16, "snapshot_every": 10, "samples_per_snapshot": 64},
}


def design(device: str = "cpu", name: str = "queues") -> StudyCreate:
    body = {**STUDY, "name": name, "training": {**STUDY["training"], "device": device}}
    return StudyCreate.model_validate(body)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'workers.sqlite'}"
        upgrade(url)
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    upgrade(url)
    yield url
    # The PostgreSQL database lives for the whole test session, so each test empties it.
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def sessions(database_url) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def new_user(sessions: sessionmaker[Session], name: str) -> int:
    with session_scope(sessions) as session:
        return create_user(session, name, None).id


def new_runs(
    sessions: sessionmaker[Session], count: int, owner_id: int | None, device: str = "cpu"
) -> list[int]:
    run_ids = []
    with session_scope(sessions) as session:
        for index in range(count):
            study = create_study(session, design(device, f"study {index}"), owner_id=owner_id)
            run_ids.append(study.runs[0].id)
    return run_ids


def claim(
    sessions: sessionmaker[Session], run_id: int, limit: int | None, owner: str = "worker"
) -> bool:
    with session_scope(sessions) as session:
        run = claim_run(
            session, run_id, f"{owner}-{run_id}", LEASE_SECONDS, "cpu", "host", max_in_flight=limit
        )
        return run is not None


def load(sessions: sessionmaker[Session], run_id: int) -> Run:
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


# ---- Queues by device ----


def test_run_queue_follows_training_device():
    assert design().training.device == "cpu", "runs train on the CPU unless they ask for a GPU"
    assert queue_of(design("gpu").model_dump(mode="json")) == "gpu"
    assert queue_of(design("cpu").model_dump(mode="json")) == "cpu"
    # Specs stored before runs chose a device wait on the CPU queue.
    assert queue_of({"training": {"steps": 10}}) == "cpu"
    assert queue_of({}) == "cpu"


def test_training_device_rejects_unknown_value():
    body = {**STUDY, "training": {**STUDY["training"], "device": "tpu"}}
    with pytest.raises(ValueError, match=r"training\.device[\s\S]*'cpu' or 'gpu'"):
        StudyCreate.model_validate(body)


def test_parse_queues():
    assert parse_queues("gpu") == ["gpu"]
    assert parse_queues(" cpu, gpu,cpu ") == ["cpu", "gpu"]
    with pytest.raises(ValueError, match="queue 'tpu' is unknown; use cpu, gpu"):
        parse_queues("cpu,tpu")
    with pytest.raises(ValueError, match="name no queue"):
        parse_queues(" , ")


def test_worker_rejects_unknown_queue(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--queues", "tpu"])
    assert exit_info.value.code == 2
    assert "--queues: queue 'tpu' is unknown; use cpu, gpu" in capsys.readouterr().err
    assert parse_args([]).queues == ["cpu"]


def test_gpu_worker_on_cpu_device_refuses_to_start(tmp_path):
    settings = Settings(data_dir=tmp_path, device="cpu")
    upgrade(settings.resolved_database_url)
    with pytest.raises(SystemExit, match="--queues gpu takes runs that asked for a GPU"):
        check_start_up(settings, ["gpu"])
    assert check_start_up(settings, ["cpu"]) == "cpu"


def queue_sizes(broker_url: str) -> dict[str, int]:
    sizes = {}
    with Connection(broker_url) as connection:
        for name in QUEUES:
            try:
                sizes[name] = connection.default_channel.queue_declare(
                    queue=name, passive=True
                ).message_count
            except connection.channel_errors:
                sizes[name] = 0  # Redis has no key for an empty queue
    return sizes


@pytest.fixture
def redis_broker(redis_url) -> Iterator[str]:
    # A database number of these tests' own: the worker tests share `redis_url`'s.
    url = redis_url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_api_sends_runs_to_their_device_queue(redis_broker, tmp_path):
    settings = Settings(data_dir=tmp_path, broker_url=redis_broker)
    upgrade(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    new_runs(sessions, 1, None, "cpu")
    new_runs(sessions, 2, None, "gpu")
    queue = RunQueue(settings)
    try:
        with session_scope(sessions) as session:
            assert queue.send_runs(session.scalars(select(Run)).all())
    finally:
        queue.close()
    assert queue_sizes(redis_broker) == {"cpu": 1, "gpu": 2}


def test_sweep_resends_each_run_to_its_device_queue(redis_broker, tmp_path):
    settings = Settings(data_dir=tmp_path, broker_url=redis_broker)
    upgrade(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    cpu_run, gpu_run = new_runs(sessions, 1, None, "cpu") + new_runs(sessions, 1, None, "gpu")
    running_gpu_run = new_runs(sessions, 1, None, "gpu")[0]
    with session_scope(sessions) as session:
        # Queued long enough ago that no message of the submitter is on its way.
        session.execute(update(Run).values(created_at=utcnow() - timedelta(minutes=5)))
    # A run whose worker died: running, with an expired lease.
    assert claim(sessions, running_gpu_run, None)
    with session_scope(sessions) as session:
        session.execute(
            update(Run)
            .where(Run.id == running_gpu_run)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )

    app = Celery("sweep-test")
    app.conf.update(celery_config(settings))
    try:
        sent = RunSweeper(app, settings, interval_seconds=60).sweep_once(sessions)
    finally:
        app.close()

    assert sent == [cpu_run, gpu_run, running_gpu_run]
    assert queue_sizes(redis_broker) == {"cpu": 1, "gpu": 2}


# ---- The per-user limit on runs in flight ----


def test_claims_past_the_limit_wait_and_say_why(sessions):
    alice = new_user(sessions, "alice")
    first, second, third = new_runs(sessions, 3, alice)

    assert claim(sessions, first, limit=2)
    assert claim(sessions, second, limit=2)
    assert not claim(sessions, third, limit=2)

    waiting = load(sessions, third)
    assert waiting.status is RunStatus.queued
    assert waiting.waiting_reason == ("waiting: alice has 2 runs training, the limit per user is 2")
    with session_scope(sessions) as session:
        assert runs_waiting_for_slot(session, first, 2) == [], "alice has no free slot"
        assert finish_run(session, first, f"worker-{first}", RunStatus.succeeded)
    with session_scope(sessions) as session:
        freed = runs_waiting_for_slot(session, first, 2)
    assert [run_id for run_id, _ in freed] == [third]
    assert freed[0][1]["training"]["device"] == "cpu"

    assert claim(sessions, third, limit=2)
    claimed = load(sessions, third)
    assert claimed.status is RunStatus.running
    assert claimed.waiting_reason is None


def test_waiting_reason_is_recorded_once(sessions):
    alice = new_user(sessions, "alice")
    first, second = new_runs(sessions, 2, alice)
    assert claim(sessions, first, limit=1)
    for _ in range(3):
        assert not claim(sessions, second, limit=1)

    with session_scope(sessions) as session:
        events = session.scalars(select(Event.id).where(Event.run_id == second)).all()
    # One when the study was made, one when the run first had to wait.
    assert len(events) == 2


def test_limit_counts_each_owner_apart(sessions):
    alice = new_user(sessions, "alice")
    bob = new_user(sessions, "bob")
    alice_runs = new_runs(sessions, 2, alice)
    bob_runs = new_runs(sessions, 2, bob)
    ownerless = new_runs(sessions, 2, None)

    assert claim(sessions, alice_runs[0], limit=1)
    assert claim(sessions, bob_runs[0], limit=1), "alice's run does not count against bob"
    assert claim(sessions, ownerless[0], limit=1)
    assert not claim(sessions, alice_runs[1], limit=1)
    assert not claim(sessions, bob_runs[1], limit=1)
    assert not claim(sessions, ownerless[1], limit=1), "studies without an owner share a limit"
    assert load(sessions, ownerless[1]).waiting_reason == (
        "waiting: studies without an owner has 1 runs training, the limit per user is 1"
    )
    assert claim(sessions, alice_runs[1], limit=None), "no limit when the setting is unset"


def test_expired_run_is_reclaimed_past_the_limit(sessions):
    alice = new_user(sessions, "alice")
    first, second = new_runs(sessions, 2, alice)
    assert claim(sessions, first, limit=2)
    assert claim(sessions, second, limit=2)
    with session_scope(sessions) as session:
        session.execute(
            update(Run)
            .where(Run.id == first)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    # A run whose worker died is in flight already; taking it over starts nothing new.
    assert claim(sessions, first, limit=1, owner="second-worker")
    assert load(sessions, first).lease_owner == f"second-worker-{first}"


def test_concurrent_claims_never_pass_the_limit(sessions):
    """Eight workers claim eight runs of one user at once, five times; two win each time."""
    alice = new_user(sessions, "alice")
    for _ in range(5):
        run_ids = new_runs(sessions, 8, alice)
        barrier = threading.Barrier(len(run_ids))
        results: dict[int, bool] = {}

        def claim_together(
            run_id: int, barrier: threading.Barrier = barrier, results: dict[int, bool] = results
        ) -> None:
            barrier.wait()
            results[run_id] = claim(sessions, run_id, limit=2)

        threads = [threading.Thread(target=claim_together, args=(run_id,)) for run_id in run_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert sorted(results) == run_ids, "every claim returned"
        assert sum(results.values()) == 2, f"claims that succeeded: {results}"
        with session_scope(sessions) as session:
            running = session.scalars(select(Run.id).where(Run.status == RunStatus.running)).all()
            assert sorted(running) == sorted(i for i, won in results.items() if won)
            # End the round's runs, so the next round starts with free slots.
            session.execute(
                update(Run)
                .where(Run.status.in_([RunStatus.running, RunStatus.queued]))
                .values(status=RunStatus.cancelled)
            )


# ---- Workers in the store ----


def test_worker_registers_beats_and_trains(sessions):
    run_id = new_runs(sessions, 1, None, "gpu")[0]
    info = WorkerInfo(name="gpu0@lab", host="lab", device="cuda:0 (H200)", queues=["gpu"])
    with session_scope(sessions) as session:
        register_worker(session, info)
        set_current_run(session, "gpu0@lab", run_id)
    with session_scope(sessions) as session:
        assert worker_heartbeat(session, "gpu0@lab")
        assert not worker_heartbeat(session, "gone@lab"), "an unknown worker registers again"
        (worker,) = list_workers(session)
        assert (worker.host, worker.device, worker.queues) == ("lab", "cuda:0 (H200)", "gpu")
        assert worker.current_run_id == run_id
        assert is_alive(worker, utcnow())
        assert not is_alive(worker, utcnow() + timedelta(seconds=WORKER_ALIVE_SECONDS + 1))
        assert available_devices([worker], utcnow()) == ["gpu"]

        # A restarted worker of the same name takes over its row and trains nothing yet.
        register_worker(session, info)
    with session_scope(sessions) as session:
        (worker,) = list_workers(session)
        assert worker.current_run_id is None
        unregister_worker(session, "gpu0@lab")
    with session_scope(sessions) as session:
        assert list_workers(session) == []


def test_deleted_run_leaves_worker_row(sessions):
    run_id = new_runs(sessions, 1, None)[0]
    with session_scope(sessions) as session:
        register_worker(session, WorkerInfo("cpu@lab", "lab", "cpu", ["cpu"]))
        set_current_run(session, "cpu@lab", run_id)
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.delete(run.study)
    with session_scope(sessions) as session:
        (worker,) = list_workers(session)
        assert worker.current_run_id is None


def test_long_silent_workers_are_forgotten(sessions):
    with session_scope(sessions) as session:
        register_worker(session, WorkerInfo("old@lab", "lab", "cpu", ["cpu"]))
        register_worker(session, WorkerInfo("new@lab", "lab", "cpu", ["cpu"]))
        session.execute(
            update(Worker)
            .where(Worker.name == "old@lab")
            .values(last_heartbeat_at=utcnow() - timedelta(seconds=WORKER_FORGET_SECONDS + 1))
        )
    with session_scope(sessions) as session:
        assert [worker.name for worker in list_workers(session)] == ["new@lab"]


# ---- GET /api/workers and the page ----


@pytest.fixture
def client(tmp_path) -> Iterator[tuple[TestClient, sessionmaker[Session]]]:
    settings = Settings(data_dir=tmp_path / "lab")
    settings.data_dir.mkdir()
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client, make_sessionmaker(engine)
    engine.dispose()


def test_workers_api_lists_device_run_and_heartbeat(client):
    test_client, sessions = client
    run_id = new_runs(sessions, 1, None, "gpu")[0]
    assert claim(sessions, run_id, None)
    with session_scope(sessions) as session:
        session.execute(update(Run).where(Run.id == run_id).values(step=12, progress=0.4))
        register_worker(session, WorkerInfo("gpu0@lab", "lab", "cuda:0 (H200)", ["gpu"]))
        set_current_run(session, "gpu0@lab", run_id)
        register_worker(session, WorkerInfo("cpu@old", "old", "cpu", ["cpu"]))
        session.execute(
            update(Worker)
            .where(Worker.name == "cpu@old")
            .values(last_heartbeat_at=utcnow() - timedelta(seconds=WORKER_ALIVE_SECONDS + 5))
        )

    response = test_client.get("/api/workers")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["devices"] == ["gpu"], "only live workers count"
    by_name = {worker["name"]: worker for worker in body["workers"]}
    gpu = by_name["gpu0@lab"]
    assert gpu["host"] == "lab"
    assert gpu["device"] == "cuda:0 (H200)"
    assert gpu["queues"] == ["gpu"]
    assert gpu["alive"] is True
    assert gpu["last_heartbeat_at"].endswith(("+00:00", "Z"))
    assert gpu["run"] == {
        "id": run_id,
        "study_id": load(sessions, run_id).study_id,
        "study_name": "study 0",
        "step": 12,
        "steps": 30,
        "progress": 0.4,
    }
    assert by_name["cpu@old"]["alive"] is False
    assert by_name["cpu@old"]["run"] is None


def test_run_api_says_why_a_run_waits(client):
    test_client, sessions = client
    first, second = new_runs(sessions, 2, None)
    assert claim(sessions, first, limit=1)
    assert not claim(sessions, second, limit=1)

    waiting = test_client.get(f"/api/runs/{second}").json()
    running = test_client.get(f"/api/runs/{first}").json()

    assert waiting["status"] == "queued"
    assert waiting["waiting_reason"] == (
        "waiting: studies without an owner has 1 runs training, the limit per user is 1"
    )
    assert running["waiting_reason"] is None
    study = test_client.get(f"/api/studies/{waiting['study_id']}").json()
    assert study["runs"][0]["waiting_reason"] == waiting["waiting_reason"]


def test_workers_page_is_served(client):
    test_client, _ = client
    page = test_client.get("/workers")
    assert page.status_code == 200
    assert '<script type="module" src="/static/workers.js">' in page.text
    script = test_client.get("/static/workers.js")
    assert script.status_code == 200
    assert "/api/workers" in script.text


def test_design_schema_offers_device():
    schema = StudyCreate.model_json_schema()
    training = schema["$defs"]["Training"]["properties"]["device"]
    assert training["enum"] == list(QUEUES), "one queue per device a run can ask for"
    assert training["default"] == "cpu"


# ---- A real worker process ----


class QueueWorker(WorkerProcess):
    """A `python -m worker` with extra command-line options."""

    def __init__(self, settings: Settings, log_path: Path, options: list[str], **env: str):
        super().__init__(settings, log_path, **env)
        self._options = options

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker", "--loglevel=INFO", *self._options],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_for_log(" ready.", READY_TIMEOUT_SECONDS)


@pytest.mark.integration
def test_worker_registers_and_hands_its_slot_to_a_waiting_run(tmp_path):
    """Limit 1 and two pool processes: the second run waits, says why, then trains."""
    settings = Settings(data_dir=tmp_path / "data", device="cpu", heartbeat_seconds=0.5)
    settings.data_dir.mkdir()
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    worker = QueueWorker(
        settings,
        tmp_path / "worker.log",
        ["--concurrency=2", "--hostname=limit@test", "--queues=cpu"],
        BIASLAB_MAX_RUNS_PER_USER="1",
    )
    queue = RunQueue(settings)
    try:
        worker.start()
        with session_scope(sessions) as session:
            first = create_study(session, design(name="first"))
            second = create_study(session, design(name="second"))
            session.flush()
            runs = [*first.runs, *second.runs]
            first_id, second_id = (run.id for run in runs)
        # The first is sent alone, so it is claimed before the second arrives.
        with session_scope(sessions) as session:
            assert queue.send_runs([session.get(Run, first_id)])
            wait_for_run(sessions, first_id, lambda run: run.step > 0, "training")
            assert queue.send_runs([session.get(Run, second_id)])

        waiting = wait_for_run(
            sessions, second_id, lambda run: run.waiting_reason is not None, "told to wait"
        )
        assert waiting.status is RunStatus.queued
        assert waiting.waiting_reason == (
            "waiting: studies without an owner has 1 runs training, the limit per user is 1"
        )
        with session_scope(sessions) as session:
            (registered,) = list_workers(session)
            assert registered.name == "limit@test"
            assert registered.queues == "cpu"
            assert registered.device == "cpu"
            assert registered.current_run_id == first_id

        ended = wait_for_run(sessions, second_id, lambda run: run.status.is_terminal, "ended")
        assert ended.status is RunStatus.succeeded, ended.error
        assert ended.waiting_reason is None
        assert load(sessions, first_id).status is RunStatus.succeeded
        first_end = load(sessions, first_id).finished_at
        assert ended.started_at is not None and first_end is not None
        assert ended.started_at >= first_end, "the second run started after the first ended"
        # The worker that ended the first run sent the waiting one at once, not the sweep.
        assert "sweep sent runs" not in worker.log()
    finally:
        queue.close()
        worker.stop()
        print(worker.log())
    with session_scope(sessions) as session:
        assert list_workers(session) == [], "a worker that shut down leaves the list"
    engine.dispose()
