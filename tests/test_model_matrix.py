"""Every model kind with every architecture, end to end on real servers.

One lab serves the whole module: `biaslab serve --no-worker` on a PostgreSQL
database and a Redis database number of its own, and `python -m worker`
processes that the tests start and kill with SIGKILL. One study sweeps model
kind x architecture (16 tiny runs) over REST. While it trains, the worker is
killed in the middle of a run that has written a checkpoint, a new worker takes
over, and another run is cancelled over REST. Headless Chromium then opens the
study's page, and submits one study per model kind from the designer form.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from biaslab.design import ARCHITECTURES, MODEL_KINDS
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Event, EventKind, Metric, Run
from biaslab.training.checkpoint import load_checkpoint
from tests.conftest import NO_SERVICES, REDIS_URL, empty_postgres_database
from tests.server import running_lab
from tests.test_browser import RECORD_STEPS_JS
from tests.test_browser_designer import (
    Lab,
    Tab,
    browser,
    explain_failure,
    open_designer,
    tab,
    wait_for_counts,
)
from tests.test_faults import claims_logged, snapshot_rows
from tests.test_worker_integration import WorkerProcess, resume_steps
from worker.store_callbacks import checkpoint_relative_path

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# The browser fixtures come from the designer tests; naming them here keeps linters quiet.
__all__ = ["browser", "tab"]

# A database number apart from the other tests' (5, and 7 for the fault tests), so that
# a session of other tests running beside this one cannot flush or take its messages.
MATRIX_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/6"
# Frequent heartbeats make a cancel land within a step or two. The lease is short, so
# that a killed worker's run is sent again within seconds (the sweep runs every half
# lease). A snapshot sends no heartbeat, so a slow one can outlast the lease and the
# sweep sends its run again. With one worker at a time, that message is ignored later.
HEARTBEAT_SECONDS = 0.2
LEASE_SECONDS = 6.0
# One torch thread per worker, and the second core serves the API and the browser.
# More threads than free cores run many times slower: PixelCNN sampling took 18 to 40
# times longer with 2 threads than with 1 on 2 cores at a load average of 4 to 7.
WORKER_ENV = {"BIASLAB_LEASE_SECONDS": str(LEASE_SECONDS), "BIASLAB_TORCH_THREADS": "1"}
# Waits for runs: a margin over the 2 minutes the matrix took on 2 cores shared with
# other work (load average 4 to 7).
RUN_TIMEOUT_SECONDS = 300.0
# Polls that time a kill or a cancel are fast. The wait for the end polls slower, so
# that the API server takes less CPU time from the worker.
POLL_SECONDS = 0.1
END_POLL_SECONDS = 0.5
PAGE_TIMEOUT_MS = 60_000

STEPS = 8
SNAPSHOT_EVERY = 4
SNAPSHOT_STEPS = list(range(SNAPSHOT_EVERY, STEPS + 1, SNAPSHOT_EVERY))
SAMPLES_PER_SNAPSHOT = 64
TRAINING = {
    "steps": STEPS,
    "batch_size": 8,
    "snapshot_every": SNAPSHOT_EVERY,
    "samples_per_snapshot": SAMPLES_PER_SNAPSHOT,
    "checkpoint_every": 2,
    "seed": 1,
}
# The smallest settings of each kind: a DDPM of 10 noise steps sampled in 1 DDIM step,
# a PixelCNN of 2 logistic components per pixel.
MODELS: dict[str, dict[str, Any]] = {
    "vae": {"kind": "vae", "z_dim": 8},
    "wgan_gp": {"kind": "wgan_gp", "z_dim": 8},
    "pixelcnn": {"kind": "pixelcnn", "mixture_components": 2},
    "ddpm": {"kind": "ddpm", "diffusion_steps": 10, "sampling_steps": 1},
}
MATRIX_STUDY = {
    "name": "model matrix",
    "dataset": {"family": "dots", "image_size": 32, "counts": [1, 3]},
    "model": MODELS["vae"],
    "training": TRAINING,
    # The first axis varies slowest: run index = kind index * 4 + architecture index.
    "sweep": [
        {"name": "model", "path": "model", "values": list(MODELS.values()), "labels": list(MODELS)},
        {"name": "architecture", "path": "model.architecture", "values": list(ARCHITECTURES)},
    ],
}
MATRIX = [(kind, architecture) for kind in MODELS for architecture in ARCHITECTURES]
# The PixelCNN runs are the slowest, because sampling takes one network pass per
# pixel: about 2 s per snapshot for `conv` and 4 s for `conv_large` on one thread.
# The kill lands after `conv` stored its first snapshot and checkpoint, before it
# ends. The cancel lands while `conv_large` takes its first snapshot, so that both
# runs have a snapshot to show.
KILLED = ("pixelcnn", "conv")
CANCELLED = ("pixelcnn", "conv_large")

# The count chart and the loss chart of each run card, as the study page drew them.
RUN_CARDS_JS = """
() => [...document.querySelectorAll('[data-testid="run"]')].map((card) => {
  const id = card.dataset.runId;
  const count = document.getElementById(`feature-chart-${id}-count`);
  const loss = document.getElementById(`loss-chart-${id}`);
  const traces = (chart) => (chart && Array.isArray(chart.data) ? chart.data : []);
  return {
    id: Number(id),
    status: card.querySelector('[data-testid="run-status"]').textContent,
    step: card.querySelector('[data-testid="snapshot-step"]').textContent,
    countSvg: Boolean(count && count.querySelector(".main-svg")),
    countTraces: traces(count).map((t) => ({name: t.name, points: (t.y || []).length})),
    lossSvg: Boolean(loss && loss.querySelector(".main-svg")),
    lossTraces: traces(loss).map((t) => ({name: t.name, points: (t.y || []).length})),
  };
})
"""

# True once every run card has drawn a count chart and a loss chart.
CHARTS_DRAWN_JS = """
(expected) => {
  const cards = document.querySelectorAll('[data-testid="run"]');
  return cards.length === expected && [...cards].every((card) => {
    const id = card.dataset.runId;
    return document.querySelector(`#feature-chart-${id}-count .main-svg`)
      && document.querySelector(`#loss-chart-${id} .main-svg`);
  });
}
"""


# ---- The lab: PostgreSQL, Redis, the API server and workers ----


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a lab on an empty PostgreSQL database and an emptied Redis database."""
    if NO_SERVICES:
        pytest.skip("BIASLAB_TEST_NO_SERVICES=1: PostgreSQL and Redis tests are skipped")
    client = redis.Redis.from_url(MATRIX_REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {MATRIX_REDIS_URL} is not reachable ({error}); start it")
    finally:
        client.close()
    with empty_postgres_database("biaslab_matrix") as database_url:
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("matrix") / "data",
            database_url=database_url,
            broker_url=MATRIX_REDIS_URL,
            device="cpu",
            heartbeat_seconds=HEARTBEAT_SECONDS,
            lease_seconds=LEASE_SECONDS,
        )
        settings.data_dir.mkdir(parents=True)
        upgrade(database_url)
        yield settings


@pytest.fixture(scope="module")
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def lab(settings: Settings) -> Iterator[Lab]:
    """The API and the pages, with no worker of their own."""
    env = {
        "BIASLAB_DATABASE_URL": settings.resolved_database_url,
        "BIASLAB_BROKER_URL": settings.resolved_broker_url,
        "BIASLAB_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with running_lab(settings.data_dir, worker=False, env=env) as base_url:
        yield Lab(base_url, settings.data_dir / "serve.log")


class PausableWorker(WorkerProcess):
    """A worker process that can also be paused, so that it takes no message meanwhile."""

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the worker and its pool with SIGSTOP for the block, then continue them."""
        assert self._process is not None, "the worker was never started"
        # The worker leads a process group of its own (start_new_session).
        os.killpg(self._process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self._process.pid, signal.SIGCONT)


@dataclass
class Workers:
    """The worker processes of the module, in the order they started."""

    settings: Settings
    folder: Path
    started: list[PausableWorker] = field(default_factory=list)
    killed: list[PausableWorker] = field(default_factory=list)

    def start(self) -> PausableWorker:
        log_path = self.folder / f"worker-{len(self.started)}.log"
        worker = PausableWorker(self.settings, log_path, **WORKER_ENV)
        self.started.append(worker)
        worker.start()
        return worker

    def kill(self, worker: PausableWorker) -> None:
        worker.kill()
        self.killed.append(worker)

    def live(self) -> PausableWorker:
        """Return the newest worker that was not killed, starting one when there is none."""
        alive = [worker for worker in self.started if worker not in self.killed]
        return alive[-1] if alive else self.start()

    def logs(self) -> str:
        return "\n".join(
            f"===== {worker.log_path.name} =====\n{worker.log()}" for worker in self.started
        )


@pytest.fixture(scope="module")
def workers(settings: Settings) -> Iterator[Workers]:
    """Start workers on `settings`; kill the ones left at the end and print every log."""
    started = Workers(settings, settings.data_dir.parent)
    yield started
    for worker in started.started:
        worker.kill()
    # pytest shows this output with -s; failed waits carry the logs in their message.
    print(started.logs())


# ---- Waiting on runs over REST ----


def wait_until(
    check: Callable[[], bool],
    description: str,
    workers: Workers,
    timeout: float,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Poll `check` until it is true; fail naming `description`, with the workers' logs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{description} after {timeout} s\n{workers.logs()[-6000:]}")
        time.sleep(poll_seconds)


def checkpoint_file(settings: Settings, run_id: int) -> Path:
    return settings.resolved_artifact_dir / checkpoint_relative_path(run_id)


def wait_for_study_end(lab: Lab, study_id: int, workers: Workers) -> dict[str, Any]:
    """Wait until every run of the study has ended; return the study."""
    study: dict[str, Any] = {}

    def ended() -> bool:
        study.update(lab.get(f"/api/studies/{study_id}"))
        return all(run["status"] in ("succeeded", "failed", "cancelled") for run in study["runs"])

    wait_until(
        ended,
        f"study {study_id} has runs that did not end",
        workers,
        RUN_TIMEOUT_SECONDS,
        END_POLL_SECONDS,
    )
    return study


# ---- The matrix study: trained once for the module ----


@dataclass(frozen=True)
class KilledRun:
    """A run whose worker was killed: what was stored when it died, and who resumed it."""

    run_id: int
    killed_worker: WorkerProcess
    resuming_worker: WorkerProcess
    # The step of the checkpoint that the killed worker left.
    checkpoint_step: int
    # Step -> row id of the snapshots stored before the kill.
    snapshot_ids: dict[int, int]
    started_at: str


@dataclass(frozen=True)
class MatrixStudy:
    study_id: int
    # (model kind, architecture) -> run id.
    run_ids: dict[tuple[str, str], int]
    # The study as GET /api/studies/ID returns it once every run ended.
    ended: dict[str, Any]
    killed: KilledRun
    cancelled_id: int

    def run(self, run_id: int) -> dict[str, Any]:
        return next(run for run in self.ended["runs"] if run["id"] == run_id)


@pytest.fixture(scope="module")
def matrix(
    lab: Lab, workers: Workers, settings: Settings, sessions: sessionmaker[Session]
) -> MatrixStudy:
    """Submit the matrix over REST, kill the worker mid-run, cancel a run, wait for the end."""
    first = workers.start()
    response = lab.post("/api/studies", MATRIX_STUDY)
    assert response.status_code == 201, f"the matrix study was rejected: {response.text}"
    created = response.json()
    by_index = {run["index"]: run["id"] for run in created["runs"]}
    assert sorted(by_index) == list(range(len(MATRIX))), (
        f"the sweep made runs {sorted(by_index)}, not one per kind and architecture"
    )
    run_ids = {pair: by_index[index] for index, pair in enumerate(MATRIX)}
    killed_id, cancelled_id = run_ids[KILLED], run_ids[CANCELLED]

    # Kill the worker once the run has stored its first snapshot and written a checkpoint.
    # A heartbeat reports a step after that step's snapshot and checkpoint are written.
    checkpoint = checkpoint_file(settings, killed_id)
    wait_until(
        lambda: (
            (run := lab.get(f"/api/runs/{killed_id}"))["status"] == "running"
            and run["step"] >= SNAPSHOT_EVERY
            and checkpoint.exists()
        ),
        f"run {killed_id} ({KILLED}) did not run past step {SNAPSHOT_EVERY} with a checkpoint",
        workers,
        RUN_TIMEOUT_SECONDS,
    )
    workers.kill(first)
    at_kill = lab.get(f"/api/runs/{killed_id}")
    assert at_kill["status"] == "running", (
        f"run {killed_id} ended as {at_kill['status']} before the kill landed; "
        "the kill tests nothing"
    )
    killed_checkpoint_step = load_checkpoint(checkpoint).step
    snapshot_ids = snapshot_rows(sessions, killed_id)
    second = workers.start()

    # Cancel a run once its heartbeat reported step 3. The worker then takes step 4's
    # snapshot and reads the cancel request at the next heartbeat, so that snapshot stays.
    wait_until(
        lambda: (
            (run := lab.get(f"/api/runs/{cancelled_id}"))["status"] == "running"
            and run["step"] >= SNAPSHOT_EVERY - 1
        ),
        f"run {cancelled_id} ({CANCELLED}) did not reach step {SNAPSHOT_EVERY - 1}",
        workers,
        RUN_TIMEOUT_SECONDS,
    )
    cancel = lab.post(f"/api/runs/{cancelled_id}/cancel", None)
    assert cancel.status_code == 200, f"cancel of run {cancelled_id} was rejected: {cancel.text}"
    assert cancel.json()["cancel_requested"] is True, f"cancel not recorded: {cancel.text}"

    ended = wait_for_study_end(lab, created["id"], workers)
    return MatrixStudy(
        study_id=created["id"],
        run_ids=run_ids,
        ended=ended,
        killed=KilledRun(
            run_id=killed_id,
            killed_worker=first,
            resuming_worker=second,
            checkpoint_step=killed_checkpoint_step,
            snapshot_ids=snapshot_ids,
            started_at=at_kill["started_at"],
        ),
        cancelled_id=cancelled_id,
    )


# ---- The matrix over REST ----


def test_sweep_makes_every_pair(matrix: MatrixStudy, sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        specs = {
            run_id: spec
            for run_id, spec in session.execute(
                select(Run.id, Run.spec).where(Run.study_id == matrix.study_id)
            )
        }
    assert len(specs) == len(MATRIX), f"the study has {len(specs)} runs, not {len(MATRIX)}"
    for (kind, architecture), run_id in matrix.run_ids.items():
        model = specs[run_id]["model"]
        assert (model["kind"], model["architecture"]) == (kind, architecture), (
            f"run {run_id} trains {model['kind']}/{model['architecture']}, "
            f"not {kind}/{architecture}"
        )
        assert specs[run_id]["training"]["steps"] == STEPS, f"run {run_id}: {specs[run_id]}"


def test_runs_end_succeeded_except_cancelled(matrix: MatrixStudy) -> None:
    for (kind, architecture), run_id in matrix.run_ids.items():
        run = matrix.run(run_id)
        expected = "cancelled" if run_id == matrix.cancelled_id else "succeeded"
        assert run["status"] == expected, (
            f"run {run_id} ({kind}/{architecture}) ended {run['status']}, not {expected}: "
            f"error {run['error']!r}"
        )
        assert run["error"] is None, f"run {run_id} ({kind}/{architecture}): {run['error']}"
        if expected == "succeeded":
            assert run["step"] == STEPS, f"run {run_id} ({kind}/{architecture}) {run}"


@pytest.mark.parametrize(("kind", "architecture"), MATRIX)
def test_run_has_histograms_and_losses(
    matrix: MatrixStudy, lab: Lab, kind: str, architecture: str
) -> None:
    run_id = matrix.run_ids[(kind, architecture)]
    name = f"run {run_id} ({kind}/{architecture})"
    last_step = SNAPSHOT_STEPS[0] if run_id == matrix.cancelled_id else STEPS

    snapshots = lab.get(f"/api/runs/{run_id}/snapshots")["snapshots"]
    steps = [snapshot["step"] for snapshot in snapshots]
    assert steps == [step for step in SNAPSHOT_STEPS if step <= last_step], (
        f"{name} stored snapshots at steps {steps}"
    )
    for snapshot in snapshots:
        count = snapshot["histograms"].get("count")
        assert count is not None, f"{name} snapshot {snapshot['step']} has no count histogram"
        assert count["total"] == SAMPLES_PER_SNAPSHOT, f"{name} snapshot {snapshot['step']}"
        assert sum(count["counts"]) + count["unrecognized"] == count["total"], (
            f"{name} snapshot {snapshot['step']}: bins and unrecognized do not add up: {count}"
        )
        assert snapshot["losses"], f"{name} snapshot {snapshot['step']} has no losses"
        assert all(math.isfinite(value) for value in snapshot["losses"].values()), (
            f"{name} snapshot {snapshot['step']} losses {snapshot['losses']}"
        )

    metrics = lab.get(f"/api/runs/{run_id}/metrics")
    losses = metrics["series"].get("loss")
    assert losses, f"{name} has no loss metric: {metrics}"
    assert all(value is not None and math.isfinite(value) for value in losses), (
        f"{name} loss metric {losses}"
    )
    assert metrics["steps"][-1] >= last_step, f"{name} metrics end at step {metrics['steps']}"

    figures = lab.get(f"/api/runs/{run_id}/figures")
    assert figures["step"] == last_step, f"{name} figures are of step {figures['step']}"
    by_name = {feature["name"]: feature for feature in figures["features"]}
    assert "count" in by_name, f"{name} has no count figure, only {sorted(by_name)}"
    traces = by_name["count"]["figure"]["data"]
    generated = [trace for trace in traces if trace["name"].lower().startswith("generated")]
    assert generated and generated[0]["y"], f"{name} count figure has no generated bars: {traces}"
    loss_traces = {trace["name"]: trace for trace in figures["loss"]["data"]}
    assert "loss" in loss_traces, f"{name} loss figure has traces {sorted(loss_traces)}"
    assert loss_traces["loss"]["y"], f"{name} loss figure has no points"


def test_killed_run_resumes_from_checkpoint(
    matrix: MatrixStudy, sessions: sessionmaker[Session]
) -> None:
    killed = matrix.killed
    run_id = killed.run_id
    resumed_log = killed.resuming_worker.log()

    assert killed.checkpoint_step >= SNAPSHOT_EVERY, (
        f"the killed worker left a checkpoint at step {killed.checkpoint_step}, "
        "before the first snapshot"
    )
    assert claims_logged(killed.killed_worker.log(), run_id) == 1, "the first worker claimed it"
    assert claims_logged(resumed_log, run_id) == 1, f"the new worker claimed it:\n{resumed_log}"
    assert resume_steps(resumed_log, run_id) == [killed.checkpoint_step], (
        f"run {run_id} did not resume from the checkpoint at step {killed.checkpoint_step}:\n"
        f"{resumed_log}"
    )
    assert matrix.run(run_id)["started_at"] == killed.started_at, "the run kept its start time"

    final = snapshot_rows(sessions, run_id)
    assert sorted(final) == SNAPSHOT_STEPS, f"run {run_id} has snapshots at {sorted(final)}"
    for step, snapshot_id in killed.snapshot_ids.items():
        if step <= killed.checkpoint_step:
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
    assert sorted(event for event in events if event is not None) == sorted(final.values()), (
        f"run {run_id}: snapshot events {events} for snapshots {final}"
    )
    assert None not in events, f"run {run_id} has a snapshot event without a snapshot"
    assert len(loss_steps) == len(set(loss_steps)), f"loss metric steps repeat: {loss_steps}"
    assert max(loss_steps) == STEPS, f"run {run_id} loss metrics end at {max(loss_steps)}"


def test_cancelled_run_keeps_checkpoint(matrix: MatrixStudy, settings: Settings) -> None:
    run_id = matrix.cancelled_id
    run = matrix.run(run_id)

    assert run["status"] == "cancelled", f"run {run_id} ended {run['status']}"
    assert SNAPSHOT_EVERY <= run["step"] < STEPS, (
        f"run {run_id} was cancelled at step {run['step']}, not after its first snapshot"
    )
    checkpoint = checkpoint_file(settings, run_id)
    assert checkpoint.exists(), f"the cancelled run {run_id} left no checkpoint at {checkpoint}"
    assert load_checkpoint(checkpoint).step == run["step"], (
        f"run {run_id} stopped at step {run['step']} with an older checkpoint"
    )


# ---- The browser ----


def test_study_page_draws_every_run(
    matrix: MatrixStudy, lab: Lab, tab: Tab, tmp_path: Path
) -> None:
    page = tab.page
    with explain_failure(tab, lab, tmp_path / "matrix-study.png"):
        page.goto(f"{lab.base_url}/studies/{matrix.study_id}")
        page.locator('#live-status[data-state="ended"]').wait_for(timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(CHARTS_DRAWN_JS, arg=len(MATRIX), timeout=PAGE_TIMEOUT_MS)
        cards = {card["id"]: card for card in page.evaluate(RUN_CARDS_JS)}

    assert sorted(cards) == sorted(matrix.run_ids.values()), f"run cards {sorted(cards)}"
    for (kind, architecture), run_id in matrix.run_ids.items():
        card = cards[run_id]
        name = f"run {run_id} ({kind}/{architecture})"
        cancelled = run_id == matrix.cancelled_id
        assert card["status"] == ("cancelled" if cancelled else "succeeded"), f"{name}: {card}"
        assert card["step"] == str(SNAPSHOT_STEPS[0] if cancelled else STEPS), f"{name}: {card}"
        assert card["countSvg"], f"{name} shows no count chart"
        names = [trace["name"].lower() for trace in card["countTraces"]]
        assert any(trace.startswith("training") for trace in names), f"{name}: {card}"
        assert any(trace.startswith("generated") for trace in names), f"{name}: {card}"
        assert card["lossSvg"], f"{name} shows no loss chart"
        assert any(trace["points"] > 0 for trace in card["lossTraces"]), f"{name}: {card}"
    assert tab.errors == [], f"the study page logged errors: {tab.errors}"


# Records the run id of every snapshot event that the study page receives.
RECORD_SNAPSHOT_EVENTS_JS = """
window.__snapshotEvents = [];
document.addEventListener("biaslab:snapshot", (event) => {
  window.__snapshotEvents.push(event.detail.runId);
});
"""

# One submission per kind, together covering the four architectures.
DESIGNER_PAIRS = list(zip(MODEL_KINDS, ("conv_large", "conv", "fc", "conv_small"), strict=True))
# The smallest model settings of each kind, by form control id.
DESIGNER_MODEL_FIELDS = {
    "vae": {"model-z-dim": "8"},
    "wgan_gp": {"model-z-dim": "8"},
    "pixelcnn": {"model-mixture-components": "2"},
    "ddpm": {"model-diffusion-steps": "10", "model-sampling-steps": "1"},
}


@pytest.mark.parametrize(("kind", "architecture"), DESIGNER_PAIRS)
def test_designer_study_trains(
    lab: Lab, workers: Workers, tab: Tab, tmp_path: Path, kind: str, architecture: str
) -> None:
    worker = workers.live()
    page = tab.page
    page.add_init_script(RECORD_STEPS_JS)
    page.add_init_script(RECORD_SNAPSHOT_EVENTS_JS)
    name = f"model matrix designer: {kind} {architecture}"
    with explain_failure(tab, lab, tmp_path / f"designer-{kind}.png"):
        open_designer(page, lab)
        page.select_option("#model-kind", kind)
        wait_for_counts(page, kind)
        page.select_option("#model-architecture", architecture)
        for control, text in DESIGNER_MODEL_FIELDS[kind].items():
            page.fill(f"#{control}", text)
        page.fill("#name", name)
        page.fill("#dataset-counts", "1, 3")
        for field_name, value in TRAINING.items():
            page.fill(f"#training-{field_name.replace('_', '-')}", str(value))

        # The worker waits until the study page listens to the event stream, so that
        # every snapshot reaches the page live rather than in its first load.
        with worker.paused():
            page.click("#submit-study")
            page.wait_for_url(re.compile(r"/studies/\d+$"))
            study_id = int(page.url.rsplit("/", 1)[1])
            page.locator("#study-name").filter(has_text=name).wait_for()
            page.locator("#design-summary h2", has_text=f"Model: {kind}").wait_for()
            page.locator('#live-status[data-state="open"]').wait_for()

        study = lab.get(f"/api/studies/{study_id}")
        model = study["design"]["model"]
        assert (model["kind"], model["architecture"]) == (kind, architecture), (
            f"the designer submitted model {model}, not {kind}/{architecture}"
        )
        training = {key: study["design"]["training"][key] for key in TRAINING}
        assert training == TRAINING, f"the designer submitted training {training}, not {TRAINING}"
        assert len(study["runs"]) == 1, f"study {study_id} has {len(study['runs'])} runs"
        run_id = study["runs"][0]["id"]

        page.locator(f'#run-{run_id} [data-testid="run-status"]', has_text="succeeded").wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        page.wait_for_function(CHARTS_DRAWN_JS, arg=1, timeout=PAGE_TIMEOUT_MS)
        page.locator(f'#run-{run_id} [data-testid="snapshot-step"]', has_text=str(STEPS)).wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        card = page.evaluate(RUN_CARDS_JS)[0]
        events = page.evaluate("window.__snapshotEvents")
        steps_shown = page.evaluate("window.__stepsShown")

    assert card["countSvg"], f"run {run_id} shows no count chart: {card}"
    assert card["lossSvg"], f"run {run_id} shows no loss chart: {card}"
    assert any(trace["points"] > 0 for trace in card["lossTraces"]), f"run {run_id}: {card}"
    assert events == [run_id] * len(SNAPSHOT_STEPS), (
        f"the page received snapshot events of runs {events}, not one per snapshot of run {run_id}"
    )
    assert steps_shown == SNAPSHOT_STEPS, f"the page showed snapshot steps {steps_shown} live"
    assert tab.errors == [], f"the pages logged errors: {tab.errors}"
