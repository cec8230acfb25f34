"""Latency of the study page's API calls on PostgreSQL, under load and with open event streams.

Run: python benchmarks/bench_study_api.py [--seconds 30] [--rate 50] [--streams 20]

A study of 100 runs with 20 snapshots each (1,000 probed samples, two features)
is written through the store into a new PostgreSQL database, and
`biaslab serve --no-worker` serves it on 127.0.0.1. A load generator in this
process sends the calls the study page makes (the study, one run's snapshots,
one run's figures at a stored step) at a fixed rate, open loop: each latency
counts from the moment its request was due, so a server that falls behind pays
for the queue it builds. It runs twice, side by side:

- quiet: the load alone;
- live: the same load while `--streams` clients follow the study's event
  stream and a writer thread adds a snapshot to a running run every 2 seconds
  and moves the steps of the running runs, as workers do.

Prints p50, p95 and p99 per call and over all calls, the ratio of the live p95
to the quiet one, and the live p95 against the target of 50 ms. Failed and
timed-out requests (10 s) count with the time they took, and are also counted. The server, the
load generator and the writer share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from biaslab.design import RunSpec, StudyCreate, expand
from biaslab.families import family_for
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.events import record_event
from biaslab.store.migrate import upgrade
from biaslab.store.models import EventKind, Run, RunStatus, Study
from biaslab.store.runs import (
    add_metrics,
    add_snapshot,
    claim_run,
    finish_run,
    heartbeat,
    save_training_histograms,
)

TARGET_P95_MS = 50.0
SERVER_URL = os.environ.get(
    "BIASLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STEPS = 5000
SNAPSHOT_EVERY = 250
SAMPLES = 1000
# Metrics every 50 steps, as the loop logs them for a run of this length.
METRICS_EVERY = 50
RUNNING_RUNS = 5
WRITE_EVERY_SECONDS = 2.0
LEASE_SECONDS = 3600.0
STOP_SECONDS = 10
REQUEST_TIMEOUT = 10.0

DESIGN = {
    "name": "bench: two and four dots",
    "dataset": {"family": "dots", "image_size": 32, "counts": [2, 4], "noise": 0.03},
    "model": {"kind": "vae", "architecture": "conv", "z_dim": 32},
    "training": {
        "steps": STEPS,
        "batch_size": 64,
        "snapshot_every": SNAPSHOT_EVERY,
        "samples_per_snapshot": SAMPLES,
    },
}


# ---- The study ----


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database on the local PostgreSQL server; drop it afterwards."""
    name = f"biaslab_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def probed_histograms(spec: RunSpec, rng: np.random.Generator) -> dict:
    """Histograms of made-up probe readings: counts near 3, some unrecognized, radii near 0.08."""
    counts = rng.poisson(3.0, SAMPLES).astype(float)
    counts[rng.random(SAMPLES) < 0.3] = np.nan
    radii = rng.normal(0.08, 0.01, SAMPLES)
    return family_for(spec.dataset).histograms(spec.dataset, {"count": counts, "dot_size": radii})


def write_study(sessions: sessionmaker[Session], runs: int, snapshots: int) -> tuple[int, list]:
    """Write the study through the store; return its id and the ids of its running runs."""
    design = StudyCreate.model_validate(DESIGN)
    (spec,) = expand(design)
    rng = np.random.default_rng(0)
    with session_scope(sessions) as session:
        study = Study(name=design.name, design=design.model_dump(mode="json"))
        study.runs = [
            Run(index=index, spec=spec.model_dump(mode="json"), status=RunStatus.queued)
            for index in range(runs)
        ]
        session.add(study)
        session.flush()
        for run in study.runs:
            record_event(session, run, EventKind.run)
        study_id, run_ids = study.id, [run.id for run in study.runs]

    running = run_ids[-RUNNING_RUNS:]
    for run_id in run_ids:
        owner = f"bench:{run_id}"
        last_step = snapshots * SNAPSHOT_EVERY
        with session_scope(sessions) as session:
            claim_run(session, run_id, owner, LEASE_SECONDS, "cpu", "bench")
            save_training_histograms(session, run_id, probed_histograms(spec, rng))
            for step in range(METRICS_EVERY, last_step + 1, METRICS_EVERY):
                losses = {"loss": 100.0 / step, "reconstruction": 90.0 / step, "kl": 10.0}
                add_metrics(session, run_id, step, losses)
            for step in range(SNAPSHOT_EVERY, last_step + 1, SNAPSHOT_EVERY):
                add_snapshot(
                    session,
                    run_id,
                    step,
                    probed_histograms(spec, rng),
                    {"loss": 100.0 / step},
                    None,
                )
            if run_id in running:
                heartbeat(session, run_id, owner, last_step, STEPS, LEASE_SECONDS)
            else:
                finish_run(session, run_id, owner, RunStatus.succeeded, step=STEPS)
    return study_id, running


# ---- The server ----


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def lab_server(database_url: str, data_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BIASLAB_")}
    env.update(BIASLAB_DATABASE_URL=database_url, BIASLAB_DATA_DIR=str(data_dir))
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--no-worker", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/studies?limit=1", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the lab did not start; see {data_dir / 'server.log'}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# ---- Load ----


@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    stream_events: list[int] = field(default_factory=list)
    written: int = 0
    first_error: str | None = None


def study_page_calls(study_id: int, run_ids: list[int], snapshots: int) -> list[tuple[str, str]]:
    """Return (call, path) pairs: the calls the study page makes, each equally often."""
    rng = random.Random(1)
    calls = []
    for _ in range(10_000):
        run_id = rng.choice(run_ids)
        step = SNAPSHOT_EVERY * rng.randint(1, snapshots)
        calls.append(
            rng.choice(
                [
                    ("GET /api/studies/ID", f"/api/studies/{study_id}"),
                    ("GET /api/runs/ID/snapshots", f"/api/runs/{run_id}/snapshots"),
                    ("GET /api/runs/ID/figures?step", f"/api/runs/{run_id}/figures?step={step}"),
                ]
            )
        )
    return calls


async def follow_stream(
    client: httpx.AsyncClient, path: str, counts: list[int], index: int, stop: asyncio.Event
) -> None:
    async with client.stream("GET", path, timeout=None) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: snapshot"):
                counts[index] += 1
            if stop.is_set():
                return


async def run_phase(
    phase: Phase,
    base: str,
    calls: list[tuple[str, str]],
    rate: float,
    seconds: float,
    streams: int,
    stream_path: str,
) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT) as client:
        stop = asyncio.Event()
        phase.stream_events = [0] * streams
        followers = [
            asyncio.create_task(follow_stream(client, stream_path, phase.stream_events, i, stop))
            for i in range(streams)
        ]
        await asyncio.sleep(1.0 if streams else 0.0)

        async def one(call: str, path: str, due: float) -> None:
            try:
                response = await client.get(path)
                problem = None if response.status_code == 200 else f"{path}: {response.text}"
            except httpx.HTTPError as error:
                problem = f"{path}: {type(error).__name__}: {error}"
            # A failed or timed-out request counts with the time it took, so an
            # overloaded server cannot look fast by dropping its slowest requests.
            phase.latencies.setdefault(call, []).append((time.perf_counter() - due) * 1000)
            if problem is not None:
                phase.errors[call] = phase.errors.get(call, 0) + 1
                phase.first_error = phase.first_error or problem

        start = time.perf_counter()
        total = int(rate * seconds)
        pending = []
        for index in range(total):
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            call, path = calls[index % len(calls)]
            pending.append(asyncio.create_task(one(call, path, due)))
        await asyncio.gather(*pending)
        stop.set()
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


class LiveWriter(threading.Thread):
    """Add a snapshot to a running run every few seconds and move the running runs' steps."""

    def __init__(self, sessions: sessionmaker[Session], running: list[int], first_step: int):
        super().__init__(daemon=True)
        self._sessions = sessions
        self._running = running
        self._step = first_step
        (self._spec,) = expand(StudyCreate.model_validate(DESIGN))
        self._rng = np.random.default_rng(1)
        self.stopping = threading.Event()
        self.written = 0

    def run(self) -> None:
        while not self.stopping.wait(WRITE_EVERY_SECONDS):
            self._step += SNAPSHOT_EVERY
            run_id = self._running[0]
            with session_scope(self._sessions) as session:
                for running_id in self._running:
                    heartbeat(
                        session, running_id, f"bench:{running_id}", self._step, STEPS, LEASE_SECONDS
                    )
                add_metrics(session, run_id, self._step, {"loss": 100.0 / self._step})
                add_snapshot(
                    session,
                    run_id,
                    self._step,
                    probed_histograms(self._spec, self._rng),
                    {"loss": 100.0 / self._step},
                    None,
                )
            self.written += 1


# ---- Report ----


def percentiles(values: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def report(phase: Phase) -> float:
    """Print the phase's table; return its p95 over all calls, in ms."""
    print(f"\n{phase.name}")
    print(f"{'call':<32} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    if phase.first_error:
        print(f"first error: {phase.first_error[:300]}")
    every: list[float] = []
    for call in sorted(phase.latencies):
        values = phase.latencies[call]
        every += values
        p50, p95, p99 = percentiles(values)
        errors = phase.errors.get(call, 0)
        print(f"{call:<32} {len(values):>8} {errors:>6} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f}")
    p50, p95, p99 = percentiles(every)
    errors = sum(phase.errors.values())
    print(f"{'all calls':<32} {len(every):>8} {errors:>6} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f}")
    if phase.stream_events:
        events = phase.stream_events
        print(
            f"event streams: {len(events)} open, snapshot events received per stream "
            f"{min(events)}-{max(events)}, snapshots written {phase.written}"
        )
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--streams", type=int, default=20, help="open event streams, live phase")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=20, help="snapshots per run")
    args = parser.parse_args()

    with fresh_database() as database_url, tempfile.TemporaryDirectory() as folder:
        upgrade(database_url)
        engine = make_engine(database_url)
        sessions = make_sessionmaker(engine)
        started = time.perf_counter()
        study_id, running = write_study(sessions, args.runs, args.snapshots)
        print(
            f"study {study_id}: {args.runs} runs x {args.snapshots} snapshots written in "
            f"{time.perf_counter() - started:.1f} s; {len(running)} runs left running"
        )
        with session_scope(sessions) as session:
            run_ids = [run_id for (run_id,) in session.execute(text("SELECT id FROM runs"))]
        calls = study_page_calls(study_id, run_ids, args.snapshots)

        with lab_server(database_url, Path(folder)) as base:
            last_event = httpx.get(f"{base}/api/studies/{study_id}").json()["last_event_id"]
            stream_path = f"/api/studies/{study_id}/events?after={last_event}"
            # Warm-up: imports, plotly templates, connection pools.
            asyncio.run(run_phase(Phase("warm-up"), base, calls, args.rate, 3, 0, stream_path))

            quiet = Phase(f"quiet: {args.rate:g} requests/s for {args.seconds:g} s")
            asyncio.run(run_phase(quiet, base, calls, args.rate, args.seconds, 0, stream_path))

            live = Phase(
                f"live: {args.rate:g} requests/s for {args.seconds:g} s, {args.streams} event "
                f"streams, a snapshot written every {WRITE_EVERY_SECONDS:g} s"
            )
            writer = LiveWriter(sessions, running, args.snapshots * SNAPSHOT_EVERY)
            writer.start()
            try:
                asyncio.run(
                    run_phase(live, base, calls, args.rate, args.seconds, args.streams, stream_path)
                )
            finally:
                writer.stopping.set()
                writer.join()
            live.written = writer.written
        engine.dispose()

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    quiet_p95 = report(quiet)
    live_p95 = report(live)
    print(f"\nlive p95 / quiet p95: {live_p95 / quiet_p95:.2f}")
    verdict = "met" if live_p95 <= TARGET_P95_MS else "missed"
    print(
        f"live p95 {live_p95:.1f} ms against the target of {TARGET_P95_MS:g} ms: "
        f"{live_p95 / TARGET_P95_MS:.2f} of it, {verdict}"
    )


if __name__ == "__main__":
    main()
