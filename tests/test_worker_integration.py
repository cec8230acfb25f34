"""A real `python -m worker` process training tiny runs end to end.

Once on the embedded defaults (SQLite store, SQLite broker) and once on
PostgreSQL with Redis. Each test gets an empty database and broker, so a
worker's sweep finds only the runs that test made.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from biaslab.design import StudyCreate
from biaslab.queue import DEFAULT_QUEUE, TRAIN_RUN_TASK, celery_config
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Event, EventKind, Metric, Run, RunStatus, Snapshot
from tests.conftest import empty_postgres_database

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 60
RUN_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TINY_STUDY = {
    "name": "worker integration",
    "dataset": {"family": "dots", "image_size": 32, "counts": [1, 3]},
    "model": {"kind": "vae"},
    "training": {
        "steps": 30,
        "batch_size": 16,
        "snapshot_every": 10,
        "samples_per_snapshot": 64,
        "seed": 1,
    },
}


def study_design(steps: int = 30, snapshot_every: int = 10, **training: float) -> StudyCreate:
    body = {**TINY_STUDY, "training": {**TINY_STUDY["training"], **training}}
    design = StudyCreate.model_validate(body)
    updated = design.training.model_copy(update={"steps": steps, "snapshot_every": snapshot_every})
    return design.model_copy(update={"training": updated})


def resume_steps(log: str, run_id: int) -> list[int]:
    """Return the checkpoint steps that a worker logged resuming run `run_id` from."""
    pattern = rf"run {run_id} study \d+: resuming from the checkpoint at step (\d+)"
    return [int(step) for step in re.findall(pattern, log)]


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty database of this test's own: a worker's sweep would pick up other tests' runs."""
    with empty_postgres_database("biaslab_worker") as url:
        yield url


@pytest.fixture(params=["embedded", "postgresql-redis"])
def settings(request, tmp_path) -> Settings:
    if request.param == "embedded":
        settings = Settings(data_dir=tmp_path / "data", device="cpu", heartbeat_seconds=0.5)
    else:
        database_url = request.getfixturevalue("fresh_postgres_url")
        broker_url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(broker_url).flushdb()
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            broker_url=broker_url,
            device="cpu",
            heartbeat_seconds=0.5,
        )
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    return settings


@pytest.fixture
def sessions(settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sender(settings) -> Iterator[Celery]:
    """A plain Celery app that sends by task name, as the API does."""
    app = Celery("integration-sender")
    app.conf.update(celery_config(settings))
    yield app
    app.close()


class WorkerProcess:
    """A `python -m worker` subprocess whose output goes to a log file."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._env = {
            key: value for key, value in os.environ.items() if not key.startswith("BIASLAB_")
        }
        self._env.update(
            {
                "BIASLAB_DATA_DIR": str(settings.data_dir),
                "BIASLAB_DATABASE_URL": settings.resolved_database_url,
                "BIASLAB_BROKER_URL": settings.resolved_broker_url,
                "BIASLAB_DEVICE": settings.device,
                "BIASLAB_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
                # Workers share the cores with pytest and with each other. Torch threads that
                # wait for a busy core can make each training step several times slower.
                "BIASLAB_TORCH_THREADS": "1",
                **env,
            }
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "worker", "--loglevel=INFO"],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_for_log(" ready.", READY_TIMEOUT_SECONDS)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_for_log(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log():
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self._process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Warm shutdown; kill the whole process group when it takes too long."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the main process and its pool, as a crashed machine would."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()


@pytest.fixture
def start_worker(settings, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on `settings`; stop them all at teardown and print their logs."""
    workers: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log", **env)
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop()
    # pytest shows this output only when the test failed.
    for worker in workers:
        print(f"===== {worker.log_path.name} =====\n{worker.log()}")


def create_run(sessions: sessionmaker[Session], design: StudyCreate) -> tuple[int, int]:
    from biaslab.store.studies import create_study

    with session_scope(sessions) as session:
        study = create_study(session, design)
        return study.id, study.runs[0].id


def load_run(sessions: sessionmaker[Session], run_id: int) -> Run:
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def wait_for_run(
    sessions: sessionmaker[Session],
    run_id: int,
    done: Callable[[Run], bool],
    description: str,
    timeout: float = RUN_TIMEOUT_SECONDS,
) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = load_run(sessions, run_id)
        if done(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(
                f"run {run_id} not {description} after {timeout} s: status {run.status.value}, "
                f"step {run.step}, error {run.error!r}"
            )
        time.sleep(0.2)


def pending_messages(settings: Settings) -> int:
    with Connection(settings.resolved_broker_url) as connection:
        return connection.default_channel.queue_declare(queue=DEFAULT_QUEUE).message_count


def test_worker_trains_run(settings, sessions, sender, start_worker):
    worker = start_worker()
    study_id, run_id = create_run(sessions, study_design())

    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended")

    assert run.status is RunStatus.succeeded, run.error
    assert run.error is None
    assert run.step == 30
    assert run.progress == 1.0
    assert run.device == "cpu"
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.lease_owner is None
    training = run.training_histograms["count"]
    assert training["total"] > 0
    assert training["counts"][0] + training["counts"][2] == training["total"], (
        "training images have 1 or 3 dots"
    )

    with session_scope(sessions) as session:
        snapshots = session.scalars(
            select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.step)
        ).all()
        metrics = session.scalars(select(Metric).where(Metric.run_id == run_id)).all()
        events = session.execute(
            select(Event.kind, Event.snapshot_id, Event.study_id)
            .where(Event.run_id == run_id)
            .order_by(Event.id)
        ).all()

    assert [snapshot.step for snapshot in snapshots] == [10, 20, 30]
    for snapshot in snapshots:
        histogram = snapshot.histograms["count"]
        assert histogram["total"] == 64
        assert sum(histogram["counts"]) + histogram["unrecognized"] == 64
        assert set(snapshot.histograms) == set(run.training_histograms), "one per feature"
        assert snapshot.scores == {}, "dots define no scores, and the column stores them"
        assert snapshot.losses, f"snapshot {snapshot.step} has no losses"
        assert all(math.isfinite(value) for value in snapshot.losses.values())
        assert snapshot.grid_path == f"runs/{run_id}/step_{snapshot.step:07d}.png"
        grid = settings.resolved_artifact_dir / snapshot.grid_path
        assert grid.read_bytes().startswith(PNG_SIGNATURE), f"{grid} is not a PNG"

    assert metrics, "no metrics stored"
    assert max(metric.step for metric in metrics) == 30
    assert all(math.isfinite(metric.value) for metric in metrics)

    assert all(event_study == study_id for _, _, event_study in events)
    assert [(kind, snapshot_id) for kind, snapshot_id, _ in events] == [
        (EventKind.run, None),  # created
        (EventKind.run, None),  # claimed
        (EventKind.run, None),  # training histograms
        *[(EventKind.snapshot, snapshot.id) for snapshot in snapshots],
        (EventKind.run, None),  # succeeded
    ]
    assert f"run {run_id} study {study_id}: succeeded" in worker.log()


def test_queued_run_survives_worker_restart(settings, sessions, sender, start_worker):
    first = start_worker()
    first.stop()
    _, run_id = create_run(sessions, study_design())

    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    assert pending_messages(settings) == 1, "the broker keeps the message while no worker runs"
    second = start_worker()
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended")

    assert run.status is RunStatus.succeeded, run.error
    assert "sweep sent runs" not in second.log(), "the broker, not the sweep, delivered the run"


def test_cancel_request_ends_run_cancelled(settings, sessions, sender, start_worker):
    start_worker()
    _, run_id = create_run(sessions, study_design(steps=100_000, snapshot_every=50_000))

    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    wait_for_run(sessions, run_id, lambda run: run.step > 0, "past its first heartbeat")
    with session_scope(sessions) as session:
        session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended", timeout=30)

    assert run.status is RunStatus.cancelled
    assert 0 < run.step < 100_000
    assert run.error is None
    assert run.finished_at is not None
    assert run.lease_owner is None


def test_worker_shutdown_requeues_running_run(settings, sessions, sender, start_worker):
    first = start_worker()
    _, run_id = create_run(sessions, study_design(steps=100_000, snapshot_every=50_000))
    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    wait_for_run(sessions, run_id, lambda run: run.step > 0, "past its first heartbeat")

    started = time.monotonic()
    first.stop()
    stop_seconds = time.monotonic() - started

    assert stop_seconds < STOP_TIMEOUT_SECONDS, "warm shutdown waited for the whole run"
    assert "queued again at step" in first.log()
    released = load_run(sessions, run_id)
    assert released.status is RunStatus.queued
    assert released.lease_owner is None

    # The message was acknowledged, so the next worker's sweep sends the run again.
    second = start_worker()
    wait_for_run(sessions, run_id, lambda run: run.status is RunStatus.running, "claimed again")
    with session_scope(sessions) as session:
        session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended", timeout=30)
    assert run.status is RunStatus.cancelled

    # The stop wrote a checkpoint at a step no earlier than the last heartbeat's.
    resumed_from = resume_steps(second.log(), run_id)
    assert len(resumed_from) == 1, second.log()
    assert resumed_from[0] >= released.step > 0
    assert run.step > resumed_from[0]


def test_killed_worker_run_resumes(settings, sessions, sender, start_worker):
    # A short lease makes the sweep (every half lease) find the orphaned run quickly.
    lease = {"BIASLAB_LEASE_SECONDS": "8"}
    first = start_worker(**lease)
    _, run_id = create_run(sessions, study_design(steps=400, snapshot_every=20))
    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    checkpoint = settings.resolved_artifact_dir / "runs" / str(run_id) / "checkpoint.pt"
    # A checkpoint is written right after each snapshot is stored.
    orphaned = wait_for_run(
        sessions, run_id, lambda run: run.step > 20 and checkpoint.exists(), "checkpointed"
    )
    first.kill()
    with session_scope(sessions) as session:
        before = {
            step: (snapshot_id, created_at)
            for step, snapshot_id, created_at in session.execute(
                select(Snapshot.step, Snapshot.id, Snapshot.created_at).where(
                    Snapshot.run_id == run_id
                )
            )
        }
    assert orphaned.status is RunStatus.running
    assert 20 in before, "the first snapshot was stored before the kill"

    second = start_worker(**lease)
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended")

    assert run.status is RunStatus.succeeded, run.error
    assert run.lease_owner is None
    assert run.started_at == orphaned.started_at
    resumed_from = resume_steps(second.log(), run_id)
    assert len(resumed_from) == 1, second.log()
    assert resumed_from[0] >= 20, "the run resumed from a checkpoint, not from step 0"
    with session_scope(sessions) as session:
        snapshots = session.execute(
            select(Snapshot.step, Snapshot.id, Snapshot.created_at)
            .where(Snapshot.run_id == run_id)
            .order_by(Snapshot.step)
        ).all()
        metric_steps = session.scalars(
            select(Metric.step).where(Metric.run_id == run_id, Metric.name == "loss")
        ).all()
    assert [step for step, _, _ in snapshots] == list(range(20, 401, 20))
    for step, snapshot_id, created_at in snapshots:
        if step <= resumed_from[0]:
            assert (snapshot_id, created_at) == before[step], f"snapshot {step} was trained again"
    assert len(metric_steps) == len(set(metric_steps))
    assert max(metric_steps) == 400


def test_new_run_ignores_leftover_checkpoint(settings, sessions, sender, start_worker):
    worker = start_worker()
    _, old_run_id = create_run(sessions, study_design())
    sender.send_task(TRAIN_RUN_TASK, args=[old_run_id])
    old = wait_for_run(sessions, old_run_id, lambda run: run.status.is_terminal, "ended")
    assert old.status is RunStatus.succeeded, old.error

    # SQLite gives a new run the id of a deleted one, whose files a worker may
    # still write as it stops. The copy puts such files at the new run's path,
    # with a checkpoint of the same design that passes every check but one.
    study_id, run_id = create_run(sessions, study_design())
    runs_dir = settings.resolved_artifact_dir / "runs"
    shutil.copytree(runs_dir / str(old_run_id), runs_dir / str(run_id))
    stale_grid = runs_dir / str(run_id) / "step_9999999.png"
    stale_grid.write_bytes(PNG_SIGNATURE)

    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended")

    assert run.status is RunStatus.succeeded, run.error
    assert resume_steps(worker.log(), run_id) == [], "a new run resumed a leftover checkpoint"
    assert f"run {run_id} study {study_id}: deleted the files that a deleted run" in worker.log()
    assert not stale_grid.exists(), "the leftover files stay in the new run's folder"
    with session_scope(sessions) as session:
        steps = session.scalars(
            select(Snapshot.step).where(Snapshot.run_id == run_id).order_by(Snapshot.step)
        ).all()
    assert steps == [10, 20, 30], "the new run trained from step 0 and stored every snapshot"


def test_diverged_run_fails_with_step(settings, sessions, sender, start_worker):
    start_worker()
    # Adam at a learning rate of 1.0 overflows the tiny VAE's loss within a few steps.
    _, run_id = create_run(sessions, study_design(steps=30, snapshot_every=10, learning_rate=1.0))

    sender.send_task(TRAIN_RUN_TASK, args=[run_id])
    run = wait_for_run(sessions, run_id, lambda run: run.status.is_terminal, "ended")

    assert run.status is RunStatus.failed
    assert run.error is not None
    assert re.match(r"diverged at step \d+: loss is (nan|inf)", run.error), run.error
    with session_scope(sessions) as session:
        values = session.scalars(select(Metric.value).where(Metric.run_id == run_id)).all()
        losses = session.scalars(select(Snapshot.losses).where(Snapshot.run_id == run_id)).all()
    assert all(math.isfinite(value) for value in values), "no non-finite metric is stored"
    assert all(math.isfinite(value) for each in losses for value in each.values())
