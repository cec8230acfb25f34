"""Server-Sent Events against a real `biaslab serve`: live snapshots and resuming by event id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from biaslab.analysis.histogram import count_histogram
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.events import record_event
from biaslab.store.models import EventKind, Run, RunStatus, Snapshot
from tests.examples import EXAMPLE_STUDY
from tests.server import running_lab

READ_TIMEOUT_SECONDS = 20


@pytest.fixture
def lab(tmp_path) -> Iterator[tuple[str, Settings]]:
    with running_lab(tmp_path, worker=False) as base_url:
        yield base_url, Settings(data_dir=tmp_path)


def read_events(source: httpx.Response | Iterator[str], expected_count: int) -> list[dict]:
    """Parse SSE messages until `expected_count` events have arrived.

    `source` is a streaming response, or the iterator of its lines when one
    stream is read more than once.
    """
    lines = source.iter_lines() if isinstance(source, httpx.Response) else source
    events: list[dict] = []
    current: dict = {}
    for line in lines:
        if line == "":
            if "event" in current:
                events.append(current)
                if len(events) == expected_count:
                    return events
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return events


def add_snapshot(settings: Settings, run_id: int, step: int, counts: list[int]) -> None:
    """Write a snapshot the way a worker does: the row and its event in one transaction."""
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        run = session.get(Run, run_id)
        snapshot = Snapshot(
            run_id=run_id,
            step=step,
            histograms={"count": count_histogram(counts).model_dump()},
            losses={"loss": 1.0},
        )
        session.add(snapshot)
        session.flush()
        record_event(session, run, EventKind.snapshot, snapshot.id)
    engine.dispose()


def test_events_stream_snapshots_and_resume(lab):
    base_url, settings = lab
    study = httpx.post(f"{base_url}/api/studies", json=EXAMPLE_STUDY).json()
    run_id = study["run_ids"][0]
    url = f"{base_url}/api/studies/{study['id']}/events"
    timeout = httpx.Timeout(5, read=READ_TIMEOUT_SECONDS)

    with httpx.stream("GET", url, timeout=timeout) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        add_snapshot(settings, run_id, 250, [2, 3, -1, 4])
        first, second = read_events(response, expected_count=2)

    assert first["event"] == "run"
    assert json.loads(first["data"])["status"] == "queued"
    assert second["event"] == "snapshot"
    snapshot = json.loads(second["data"])
    assert snapshot["snapshot"]["step"] == 250
    assert snapshot["snapshot"]["histograms"]["count"]["unrecognized"] == 1
    count = snapshot["figures"]["features"][0]
    assert count["name"] == "count"
    assert count["figure"]["data"][0]["name"] == "generated (step 250)"
    assert snapshot["snapshot"]["scores"] == {}

    # A reconnect that sends the last id it saw gets only what came after it.
    add_snapshot(settings, run_id, 500, [3, 3, 3])
    headers = {"Last-Event-ID": second["id"]}
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
        (resumed,) = read_events(response, expected_count=1)
    assert resumed["event"] == "snapshot"
    assert int(resumed["id"]) > int(second["id"])
    assert json.loads(resumed["data"])["snapshot"]["step"] == 500


def test_events_of_missing_study_404(lab):
    base_url, _ = lab
    response = httpx.get(f"{base_url}/api/studies/42/events", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": "study 42 not found"}


def test_events_report_progress_of_running_run(lab):
    base_url, settings = lab
    study = httpx.post(f"{base_url}/api/studies", json=EXAMPLE_STUDY).json()
    run_id = study["run_ids"][0]
    url = f"{base_url}/api/studies/{study['id']}/events?after={study['last_event_id']}"
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        run = session.get(Run, run_id)
        run.status = RunStatus.running
        run.step = 120

    timeout = httpx.Timeout(5, read=READ_TIMEOUT_SECONDS)
    with httpx.stream("GET", url, timeout=timeout) as response:
        (progress,) = read_events(response, expected_count=1)
    engine.dispose()

    assert progress["event"] == "run"
    assert "id" not in progress, "progress messages carry no event id, so a reconnect skips them"
    assert json.loads(progress["data"])["step"] == 120


def test_streams_on_one_study_share_events_in_order(lab):
    """Streams opened at different positions each get every later event once, in id order."""
    base_url, settings = lab
    study = httpx.post(f"{base_url}/api/studies", json=EXAMPLE_STUDY).json()
    run_id = study["run_ids"][0]
    url = f"{base_url}/api/studies/{study['id']}/events"
    timeout = httpx.Timeout(5, read=READ_TIMEOUT_SECONDS)
    created = study["last_event_id"]

    with httpx.stream("GET", f"{url}?after={created}", timeout=timeout) as response:
        live = response.iter_lines()
        add_snapshot(settings, run_id, 250, [2, 2])
        (first,) = read_events(live, expected_count=1)
        # This stream starts before the study's first event, so it reads the run
        # event and the first snapshot from the database, then joins the live feed.
        with httpx.stream("GET", url, timeout=timeout) as late:
            add_snapshot(settings, run_id, 500, [4, 4])
            (second,) = read_events(live, expected_count=1)
            late_events = read_events(late, expected_count=3)

    assert json.loads(first["data"])["snapshot"]["step"] == 250
    assert json.loads(second["data"])["snapshot"]["step"] == 500
    assert [event["event"] for event in late_events] == ["run", "snapshot", "snapshot"]
    late_ids = [int(event["id"]) for event in late_events]
    assert late_ids == sorted(set(late_ids)), f"events repeated or out of order: {late_ids}"
    assert late_ids[1:] == [int(first["id"]), int(second["id"])]
