"""The run state machine of `biaslab.store.runs`, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from backend.run_statics import RunStaticsCache
from biaslab.analysis.histogram import count_histogram
from biaslab.design import StudyCreate
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import check_current, head_revision, upgrade
from biaslab.store.models import Base, Event, EventKind, Metric, Run, RunStatus, Snapshot, utcnow
from biaslab.store.runs import (
    add_metrics,
    add_snapshot,
    claim_run,
    discard_results_after,
    finish_run,
    heartbeat,
    release_run,
    runs_to_resend,
    save_training_histograms,
    was_claimed_before,
)
from biaslab.store.studies import create_study, delete_study, request_cancel

LEASE_SECONDS = 60.0
TINY_STUDY = {
    "name": "store test",
    "dataset": {"family": "dots", "image_size": 32, "counts": [1, 3]},
    "model": {"kind": "vae"},
    "training": {"steps": 30, "batch_size": 16, "snapshot_every": 10, "samples_per_snapshot": 64},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
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


def new_run(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as session:
        study = create_study(session, StudyCreate.model_validate(TINY_STUDY))
        return study.runs[0].id


def claim(sessions: sessionmaker[Session], run_id: int, owner: str) -> Run | None:
    with session_scope(sessions) as session:
        return claim_run(session, run_id, owner, LEASE_SECONDS, "cpu", "host-a")


def load_run(sessions: sessionmaker[Session], run_id: int) -> Run:
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def expire_lease(sessions: sessionmaker[Session], run_id: int) -> None:
    with session_scope(sessions) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def as_utc(moment: datetime | None) -> datetime:
    """SQLite returns naive datetimes; the store writes UTC."""
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def events_of(sessions: sessionmaker[Session], run_id: int) -> list[tuple[EventKind, int | None]]:
    with session_scope(sessions) as session:
        rows = session.execute(
            select(Event.kind, Event.snapshot_id).where(Event.run_id == run_id).order_by(Event.id)
        ).all()
        return [(kind, snapshot_id) for kind, snapshot_id in rows]


def store_snapshot(sessions: sessionmaker[Session], run_id: int, step: int) -> Snapshot:
    histograms = {"count": count_histogram(np.array([1, 3, 3, -1]))}
    with session_scope(sessions) as session:
        return add_snapshot(
            session, run_id, step, histograms, {"loss": 1.5}, f"runs/{run_id}/step_{step:07d}.png"
        )


def test_claim_sets_running_and_lease(sessions):
    run_id = new_run(sessions)
    before = utcnow()

    claimed = claim(sessions, run_id, "worker-a")

    assert claimed is not None
    assert claimed.id == run_id
    run = load_run(sessions, run_id)
    assert run.status is RunStatus.running
    assert run.lease_owner == "worker-a"
    assert run.device == "cpu"
    assert run.worker_host == "host-a"
    assert as_utc(run.started_at) >= before
    assert as_utc(run.lease_expires_at) >= before + timedelta(seconds=LEASE_SECONDS)


def test_claim_with_live_lease_returns_none(sessions):
    run_id = new_run(sessions)
    assert claim(sessions, run_id, "worker-a") is not None

    assert claim(sessions, run_id, "worker-b") is None
    assert claim(sessions, run_id, "worker-a") is None
    assert load_run(sessions, run_id).lease_owner == "worker-a"


def test_concurrent_claims_give_one_owner(sessions):
    run_id = new_run(sessions)
    owners = [f"worker-{index}" for index in range(8)]

    with ThreadPoolExecutor(max_workers=len(owners)) as pool:
        results = list(pool.map(lambda owner: claim(sessions, run_id, owner), owners))

    winners = [owner for owner, run in zip(owners, results, strict=True) if run is not None]
    assert len(winners) == 1
    assert load_run(sessions, run_id).lease_owner == winners[0]


def test_claim_after_lease_expiry(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    first_start = load_run(sessions, run_id).started_at
    expire_lease(sessions, run_id)

    claimed = claim(sessions, run_id, "worker-b")

    assert claimed is not None
    run = load_run(sessions, run_id)
    assert run.lease_owner == "worker-b"
    assert run.started_at == first_start, "started_at records the first claim"
    with session_scope(sessions) as session:
        assert heartbeat(session, run_id, "worker-a", 5, 30, LEASE_SECONDS) is True
    with session_scope(sessions) as session:
        assert finish_run(session, run_id, "worker-a", RunStatus.succeeded) is False
    assert load_run(sessions, run_id).status is RunStatus.running


def claimed_before(sessions: sessionmaker[Session], run_id: int) -> bool:
    with session_scope(sessions) as session:
        return was_claimed_before(session, run_id)


def test_was_claimed_before_decides_resume(sessions):
    run_id = new_run(sessions)
    assert claimed_before(sessions, run_id) is False, "a new run has no checkpoint to resume"

    claim(sessions, run_id, "worker-a")
    assert claimed_before(sessions, run_id) is True, "a claimed run resumes when claimed again"

    with session_scope(sessions) as session:
        assert release_run(session, run_id, "worker-a") is True
    assert claimed_before(sessions, run_id) is True, "a released run resumes"

    claim(sessions, run_id, "worker-b")
    expire_lease(sessions, run_id)
    assert claimed_before(sessions, run_id) is True, "a run whose lease expired resumes"
    assert claimed_before(sessions, run_id + 1000) is False, "a missing run"


@pytest.mark.parametrize("status", [RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled])
def test_claim_of_ended_run_returns_none(sessions, status):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    with session_scope(sessions) as session:
        assert finish_run(session, run_id, "worker-a", status, error="boom") is True
    expire_lease(sessions, run_id)

    assert claim(sessions, run_id, "worker-b") is None
    assert load_run(sessions, run_id).status is status


def test_claim_of_cancelled_queued_run(sessions):
    run_id = new_run(sessions)
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert request_cancel(session, run) is True

    assert claim(sessions, run_id, "worker-a") is None
    assert load_run(sessions, run_id).status is RunStatus.cancelled


def test_claim_of_missing_run_returns_none(sessions):
    assert claim(sessions, 999_999, "worker-a") is None


def test_heartbeat_renews_lease_and_progress(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    expire_lease(sessions, run_id)
    before = utcnow()

    with session_scope(sessions) as session:
        stop = heartbeat(session, run_id, "worker-a", 15, 30, LEASE_SECONDS)

    assert stop is False
    run = load_run(sessions, run_id)
    assert run.step == 15
    assert run.progress == pytest.approx(0.5)
    assert as_utc(run.lease_expires_at) >= before + timedelta(seconds=LEASE_SECONDS)


def test_heartbeat_reports_cancel_request(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert request_cancel(session, run) is True

    with session_scope(sessions) as session:
        assert heartbeat(session, run_id, "worker-a", 3, 30, LEASE_SECONDS) is True
    assert load_run(sessions, run_id).status is RunStatus.running


def test_snapshot_is_stored_once_per_step(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    first = store_snapshot(sessions, run_id, 10)
    second = store_snapshot(sessions, run_id, 10)

    assert second.id == first.id
    with session_scope(sessions) as session:
        rows = session.scalars(select(Snapshot).where(Snapshot.run_id == run_id)).all()
        assert len(rows) == 1
        assert rows[0].histograms["count"]["total"] == 4
        assert rows[0].histograms["count"]["unrecognized"] == 1
        assert rows[0].losses == {"loss": 1.5}
    snapshot_events = [e for e in events_of(sessions, run_id) if e[0] is EventKind.snapshot]
    assert snapshot_events == [(EventKind.snapshot, first.id)]


def test_metrics_stored_once_per_name(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session:
        add_metrics(session, run_id, 5, {"loss": 2.0, "kl": 0.5})
    with session_scope(sessions) as session:
        add_metrics(session, run_id, 5, {"loss": 9.0, "recon": 1.5})

    with session_scope(sessions) as session:
        rows = session.execute(
            select(Metric.name, Metric.value).where(Metric.run_id == run_id).order_by(Metric.name)
        ).all()
    assert [tuple(row) for row in rows] == [("kl", 0.5), ("loss", 2.0), ("recon", 1.5)]


def test_reclaim_keeps_earlier_results(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    with session_scope(sessions) as session:
        save_training_histograms(session, run_id, {"count": count_histogram(np.array([1, 3]))})
        add_metrics(session, run_id, 5, {"loss": 2.0})
        heartbeat(session, run_id, "worker-a", 10, 30, LEASE_SECONDS)
    snapshot = store_snapshot(sessions, run_id, 10)
    expire_lease(sessions, run_id)

    assert claim(sessions, run_id, "worker-b") is not None

    with session_scope(sessions) as session:
        snapshot_ids = session.scalars(select(Snapshot.id).where(Snapshot.run_id == run_id)).all()
        metric_steps = session.scalars(select(Metric.step).where(Metric.run_id == run_id)).all()
    assert snapshot_ids == [snapshot.id], "the resuming worker decides what to discard"
    assert metric_steps == [5]
    run = load_run(sessions, run_id)
    assert run.training_histograms is None, "the resumed run stores them again"
    assert run.step == 0
    assert run.progress == 0.0


def test_discard_results_after_step(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    with session_scope(sessions) as session:
        for step in (5, 10, 15, 20):
            add_metrics(session, run_id, step, {"loss": float(step), "kl": 1.0})
    kept = store_snapshot(sessions, run_id, 10)
    store_snapshot(sessions, run_id, 20)

    with session_scope(sessions) as session:
        assert discard_results_after(session, run_id, 10) == 1

    with session_scope(sessions) as session:
        snapshots = session.scalars(select(Snapshot.id).where(Snapshot.run_id == run_id)).all()
        metrics = session.execute(
            select(Metric.step, Metric.name)
            .where(Metric.run_id == run_id)
            .order_by(Metric.step, Metric.name)
        ).all()
    assert snapshots == [kept.id]
    assert [tuple(row) for row in metrics] == [(5, "kl"), (5, "loss"), (10, "kl"), (10, "loss")]
    snapshot_events = [e for e in events_of(sessions, run_id) if e[0] is EventKind.snapshot]
    assert snapshot_events == [(EventKind.snapshot, kept.id)]
    again = store_snapshot(sessions, run_id, 20)
    assert again.id != kept.id, "step 20 can be stored again after the discard"


def test_discard_after_zero_deletes_all(sessions):
    run_id = new_run(sessions)
    other_id = new_run(sessions)
    for each in (run_id, other_id):
        claim(sessions, each, "worker-a")
        with session_scope(sessions) as session:
            add_metrics(session, each, 1, {"loss": 2.0})
        store_snapshot(sessions, each, 10)

    with session_scope(sessions) as session:
        assert discard_results_after(session, run_id, 0) == 1

    with session_scope(sessions) as session:
        run_ids = session.scalars(select(Snapshot.run_id)).all()
        metric_runs = session.scalars(select(Metric.run_id)).all()
    assert run_ids == [other_id], "other runs keep their snapshots"
    assert metric_runs == [other_id]
    assert all(kind is EventKind.run for kind, _ in events_of(sessions, run_id))
    assert any(kind is EventKind.snapshot for kind, _ in events_of(sessions, other_id))


def test_finish_by_owner_succeeds(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session:
        assert finish_run(session, run_id, "worker-a", RunStatus.succeeded, step=30) is True

    run = load_run(sessions, run_id)
    assert run.status is RunStatus.succeeded
    assert run.progress == 1.0
    assert run.step == 30
    assert run.finished_at is not None
    assert run.lease_owner is None
    assert run.lease_expires_at is None
    assert run.error is None


def test_finish_by_non_owner_refused(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session:
        assert finish_run(session, run_id, "worker-b", RunStatus.failed, error="boom") is False

    run = load_run(sessions, run_id)
    assert run.status is RunStatus.running
    assert run.lease_owner == "worker-a"
    assert run.error is None


def test_finish_with_running_status_raises(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session, pytest.raises(ValueError, match="running"):
        finish_run(session, run_id, "worker-a", RunStatus.running)


def test_failed_run_keeps_error(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session:
        finish_run(session, run_id, "worker-a", RunStatus.failed, error="ValueError: bad batch")

    run = load_run(sessions, run_id)
    assert run.status is RunStatus.failed
    assert run.error == "ValueError: bad batch"
    assert run.progress < 1.0


def test_release_by_owner_requeues_run(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")

    with session_scope(sessions) as session:
        assert release_run(session, run_id, "worker-b") is False
    with session_scope(sessions) as session:
        assert release_run(session, run_id, "worker-a") is True

    run = load_run(sessions, run_id)
    assert run.status is RunStatus.queued
    assert run.lease_owner is None
    assert run.lease_expires_at is None
    assert run.finished_at is None
    assert events_of(sessions, run_id)[-1] == (EventKind.run, None)
    assert claim(sessions, run_id, "worker-b") is not None


def test_events_recorded_in_order(sessions):
    run_id = new_run(sessions)
    claim(sessions, run_id, "worker-a")
    with session_scope(sessions) as session:
        save_training_histograms(session, run_id, {"count": count_histogram(np.array([1, 3]))})
    first = store_snapshot(sessions, run_id, 10)
    second = store_snapshot(sessions, run_id, 20)
    with session_scope(sessions) as session:
        finish_run(session, run_id, "worker-a", RunStatus.succeeded)

    assert events_of(sessions, run_id) == [
        (EventKind.run, None),  # created, queued
        (EventKind.run, None),  # claimed, running
        (EventKind.run, None),  # training histograms
        (EventKind.snapshot, first.id),
        (EventKind.snapshot, second.id),
        (EventKind.run, None),  # succeeded
    ]


def test_runs_to_resend(sessions):
    fresh_queued = new_run(sessions)
    old_queued = new_run(sessions)
    live = new_run(sessions)
    expired = new_run(sessions)
    ended = new_run(sessions)
    with session_scope(sessions) as session:
        session.execute(
            update(Run)
            .where(Run.id == old_queued)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    for run_id in (live, expired, ended):
        claim(sessions, run_id, "worker-a")
    expire_lease(sessions, expired)
    with session_scope(sessions) as session:
        finish_run(session, ended, "worker-a", RunStatus.succeeded)

    mine = {fresh_queued, old_queued, live, expired, ended}
    with session_scope(sessions) as session:
        everything = [r for r in runs_to_resend(session, utcnow()) if r in mine]
        expired_only = [
            r for r in runs_to_resend(session, utcnow(), include_queued=False) if r in mine
        ]

    assert everything == [old_queued, expired]
    assert fresh_queued not in everything, "a fresh submit still has its own message"
    assert expired_only == [expired]


def test_upgrade_creates_model_tables(database_url):
    engine = make_engine(database_url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            columns = {column["name"] for column in inspector.get_columns(table.name)}
            assert columns == set(table.columns.keys()), f"columns of {table.name}"
        assert set(Base.metadata.tables) <= set(inspector.get_table_names())
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()
    check_current(database_url)


def test_check_current_rejects_empty_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"

    with pytest.raises(RuntimeError) as raised:
        check_current(url)

    message = str(raised.value)
    assert "is at revision none" in message
    assert f"expected {head_revision()}" in message
    assert "biaslab db upgrade" in message


# The API's cache of each run's design and training histograms.


def statics_of(cache: RunStaticsCache, sessions: sessionmaker[Session], run_id: int):
    with session_scope(sessions) as session:
        return cache.get(session, [session.get(Run, run_id)])[run_id]


def test_statics_follow_training_histograms(sessions):
    cache = RunStaticsCache()
    run_id = new_run(sessions)

    before = statics_of(cache, sessions, run_id)
    assert before.steps == TINY_STUDY["training"]["steps"]
    assert before.training_histograms is None, "a new run has no training histograms"

    with session_scope(sessions) as session:
        save_training_histograms(session, run_id, {"count": count_histogram([2, 2, 4])})
    stored = statics_of(cache, sessions, run_id).training_histograms
    assert stored is not None, "histograms stored after the first read must show"
    assert stored["count"].total == 3

    # Claiming the run again clears its histograms until the worker stores them anew.
    claim(sessions, run_id, "worker-b")
    cleared = statics_of(cache, sessions, run_id)
    assert cleared.training_histograms is None, "cleared histograms must not come from the cache"


def test_statics_cache_keeps_newest_runs(sessions):
    cache = RunStaticsCache(max_runs=1)
    first, second = new_run(sessions), new_run(sessions)
    with session_scope(sessions) as session:
        both = cache.get(session, [session.get(Run, first), session.get(Run, second)])
    assert set(both) == {first, second}, "every asked run is returned even past the limit"
    assert len(cache._entries) == 1
    assert second in cache._entries, "the least recently read run goes first"


def test_statics_not_reused_across_runs(sessions):
    cache = RunStaticsCache()
    old_id = new_run(sessions)
    assert statics_of(cache, sessions, old_id).steps == TINY_STUDY["training"]["steps"]

    with session_scope(sessions) as session:
        delete_study(session, session.get(Run, old_id).study)
    longer = {**TINY_STUDY, "training": {**TINY_STUDY["training"], "steps": 40}}
    with session_scope(sessions) as session:
        new_id = create_study(session, StudyCreate.model_validate(longer)).runs[0].id

    # SQLite gives the new run the deleted one's id; PostgreSQL a new one.
    assert statics_of(cache, sessions, new_id).steps == 40, "statics of a deleted run shown"
