"""A study's event streams under deletion, reused ids, lost access and shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from biaslab.settings import Settings
from biaslab.store.users import create_user, issue_token
from tests.server import free_port, running_lab
from tests.stream_client import SseReader, beat, claim, finish, store, tiny


@pytest.fixture
def lab(tmp_path):
    with running_lab(tmp_path, worker=False) as base_url:
        yield base_url, Settings(data_dir=tmp_path)


def _is_run(run_id, status=None, has_id=None, step=None):
    def check(message):
        event_id, name, data = message
        return (
            name == "run"
            and data["id"] == run_id
            and (status is None or data["status"] == status)
            and (has_id is None or (event_id is not None) == has_id)
            and (step is None or data["step"] == step)
        )

    return check


def test_late_stream_shows_ended_run_ended(lab):
    """A joining stream gets the feed's progress messages after its backlog; they may be stale."""
    base_url, settings = lab
    steps = 300
    created = httpx.post(
        f"{base_url}/api/studies", json=tiny("s", steps=steps, seeds=[0, 1, 2, 3])
    ).json()
    url = f"{base_url}/api/studies/{created['id']}/events"
    keeper = SseReader(url)  # another tab: keeps the study's feed alive
    stale = []
    for run_id in created["run_ids"]:
        claim(settings, run_id)
        beat(settings, run_id, steps - 11, steps)
        keeper.wait_for(_is_run(run_id, "running", has_id=False, step=steps - 11))
        finish(settings, run_id, steps)
        keeper.wait_for(_is_run(run_id, "succeeded", has_id=True))
        joiner = SseReader(url)  # a page opened right after the run ended
        time.sleep(2.5)
        joiner.close()
        runs = [data for _, name, data in joiner.messages if name == "run" and data["id"] == run_id]
        if runs and runs[-1]["status"] != "succeeded":
            stale.append((run_id, [(d["status"], d["step"]) for d in runs]))
    keeper.close()
    assert stale == [], f"last message about an ended run says it is running: {stale}"


def test_stream_ends_on_study_delete(lab):
    base_url, _ = lab
    created = httpx.post(f"{base_url}/api/studies", json=tiny("to delete")).json()
    reader = SseReader(f"{base_url}/api/studies/{created['id']}/events")
    reader.wait_for(lambda message: message[1] == "run")
    assert httpx.delete(f"{base_url}/api/studies/{created['id']}").status_code == 204
    assert reader.ended.wait(20), "the stream of a deleted study stays open"


def test_deleted_study_stream_ignores_reused_id(lab):
    base_url, settings = lab
    deleted = httpx.post(f"{base_url}/api/studies", json=tiny("deleted")).json()
    reader = SseReader(f"{base_url}/api/studies/{deleted['id']}/events")
    reader.wait_for(lambda message: message[1] == "run")
    httpx.delete(f"{base_url}/api/studies/{deleted['id']}").raise_for_status()
    seen = len(reader.messages)

    other = httpx.post(f"{base_url}/api/studies", json=tiny("someone else's", (6,))).json()
    assert other["id"] == deleted["id"]  # SQLite reused the id
    run_id = other["run_ids"][0]
    claim(settings, run_id)
    beat(settings, run_id, 7, 20)
    time.sleep(3)
    reader.close()
    leaked = [
        (name, data.get("id"), data.get("status")) for _, name, data in reader.messages[seen:]
    ]
    assert leaked == [], f"the deleted study's stream received another study's runs: {leaked}"


def test_stream_stops_when_study_private(tmp_path):
    with running_lab(tmp_path, worker=False, env={"BIASLAB_AUTH": "required"}) as base_url:
        settings = Settings(data_dir=tmp_path)
        with store(settings) as session:
            bob = issue_token(session, create_user(session, "bob", None), "t").secret
            carol = issue_token(session, create_user(session, "carol", None), "t").secret
        as_bob = {"authorization": f"Bearer {bob}"}
        as_carol = {"authorization": f"Bearer {carol}"}
        created = httpx.post(f"{base_url}/api/studies", json=tiny("bob's"), headers=as_bob).json()
        run_id = created["run_ids"][0]
        reader = SseReader(f"{base_url}/api/studies/{created['id']}/events", headers=as_carol)
        reader.wait_for(lambda message: message[1] == "run")

        made_private = httpx.patch(
            f"{base_url}/api/studies/{created['id']}", json={"private": True}, headers=as_bob
        )
        assert made_private.json()["private"] is True
        assert (
            httpx.get(f"{base_url}/api/studies/{created['id']}", headers=as_carol).status_code
            == 404
        )
        seen = len(reader.messages)
        claim(settings, run_id)
        beat(settings, run_id, 7, 20)
        time.sleep(3)
        reader.close()
        leaked = [
            (name, data.get("status"), data.get("step")) for _, name, data in reader.messages[seen:]
        ]
        assert leaked == [], f"carol still receives bob's private study: {leaked}"


def test_sigterm_stops_server_with_open_stream(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--no-worker",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/api/session", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        created = httpx.post(f"{base_url}/api/studies", json=tiny("open tab")).json()
        reader = SseReader(f"{base_url}/api/studies/{created['id']}/events")
        reader.wait_for(lambda message: message[1] == "run")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("biaslab serve did not stop within 15 s of SIGTERM with one stream open")
        assert time.monotonic() - started < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_reused_id_study_gets_every_event(lab):
    """The deleted study's feed outlives it; a stream on the new study joins it and its cursor."""
    base_url, settings = lab
    deleted = httpx.post(f"{base_url}/api/studies", json=tiny("deleted")).json()
    old_tab = SseReader(f"{base_url}/api/studies/{deleted['id']}/events")
    old_tab.wait_for(lambda message: message[1] == "run")
    # A few events, so that the feed's cursor is ahead of the ids SQLite will hand out again.
    claim(settings, deleted["run_ids"][0])
    finish(settings, deleted["run_ids"][0], 20)
    old_tab.wait_for(_is_run(deleted["run_ids"][0], "succeeded", has_id=True))
    httpx.delete(f"{base_url}/api/studies/{deleted['id']}").raise_for_status()

    new = httpx.post(f"{base_url}/api/studies", json=tiny("new")).json()
    assert new["id"] == deleted["id"]
    new_tab = SseReader(f"{base_url}/api/studies/{new['id']}/events")
    new_tab.wait_for(lambda message: message[1] == "run")
    run_id = new["run_ids"][0]
    claim(settings, run_id)
    finish(settings, run_id, 20)
    try:
        new_tab.wait_for(_is_run(run_id, "succeeded"), timeout=5)
    finally:
        old_tab.close()
        new_tab.close()
