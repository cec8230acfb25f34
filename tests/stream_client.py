"""Test helpers for event streams: a tiny study design, direct store writes, an SSE reader."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import httpx

from biaslab.analysis.histogram import count_histogram
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.models import RunStatus
from biaslab.store.runs import claim_run, finish_run, heartbeat, save_training_histograms

OWNER = "test-worker"


def tiny(name: str, counts=(2, 4), steps: int = 20, seeds=None) -> dict:
    design = {
        "name": name,
        "dataset": {"family": "dots", "image_size": 32, "counts": list(counts), "noise": 0.03},
        "model": {"kind": "vae", "architecture": "fc", "z_dim": 8, "beta": 1.0},
        "training": {
            "steps": steps,
            "batch_size": 8,
            "learning_rate": 0.001,
            "snapshot_every": 10,
            "samples_per_snapshot": 64,
            "seed": 0,
        },
    }
    if seeds:
        design["sweep"] = [{"path": "training.seed", "values": list(seeds)}]
    return design


@contextmanager
def store(settings: Settings):
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def save_counts(settings: Settings, run_id: int, counts: list[int]) -> None:
    """Store training histograms as a worker does when it starts a run."""
    with store(settings) as session:
        save_training_histograms(session, run_id, {"count": count_histogram(counts)})


def claim(settings: Settings, run_id: int) -> None:
    with store(settings) as session:
        assert claim_run(session, run_id, OWNER, 600, "cpu", "test") is not None


def beat(settings: Settings, run_id: int, step: int, steps: int) -> None:
    with store(settings) as session:
        heartbeat(session, run_id, OWNER, step, steps, 600)


def finish(settings: Settings, run_id: int, steps: int) -> None:
    with store(settings) as session:
        assert finish_run(session, run_id, OWNER, RunStatus.succeeded, step=steps)


class SseReader:
    """A reader of one stream on a thread. `messages` contains (id, event, data) as they arrive."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.messages: list[tuple[int | None, str, dict]] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with httpx.stream(
                "GET", self.url, headers=self.headers, timeout=httpx.Timeout(5, read=60)
            ) as response:
                self.status = response.status_code
                self.opened.set()
                current: dict = {}
                for line in response.iter_lines():
                    if self._stop:
                        return
                    if line == "":
                        if "event" in current:
                            self.messages.append(
                                (
                                    int(current["id"]) if "id" in current else None,
                                    current["event"],
                                    json.loads(current["data"]),
                                )
                            )
                        current = {}
                    elif not line.startswith(":"):
                        key, _, value = line.partition(": ")
                        current[key] = value
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.ended.set()

    def wait_for(self, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.messages):
                if predicate(message):
                    return message
            time.sleep(0.02)
        raise TimeoutError(f"no matching message on {self.url}; got {self.messages}")

    def close(self) -> None:
        self._stop = True
