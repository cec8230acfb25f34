"""The designer and study pages in headless Chromium, against a real `biaslab serve`.

One server with its embedded worker serves the whole module. Chromium is the
system one (CHROMIUM_PATH, /usr/bin/chromium by default), because test tools
cannot download a browser here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
PlaywrightTimeoutError = sync_api.TimeoutError

pytestmark = pytest.mark.browser

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_SECONDS = 60
SERVER_STOP_SECONDS = 20
# Playwright timeouts are in milliseconds.
PAGE_TIMEOUT_MS = 15_000
FIRST_SNAPSHOT_TIMEOUT_MS = 180_000
RUN_END_TIMEOUT_MS = 240_000

# A CPU trains this in under a minute (21 to 56 s measured on 2 cores), with six snapshots.
QUICK_TRAINING = {
    "training-steps": "120",
    "training-batch-size": "16",
    "training-snapshot-every": "20",
    "training-samples-per-snapshot": "100",
}

# The generated trace of a feature chart: its name, step and sum of shares.
GENERATED_TRACE_JS = """
(chartId) => {
  const chart = document.getElementById(chartId);
  if (!chart || !Array.isArray(chart.data)) return null;
  const trace = chart.data.find((t) => /^generated/i.test(t.name || ""));
  if (!trace) return null;
  const y = Array.from(trace.y, Number);
  return {name: trace.name, y, total: y.reduce((a, b) => a + b, 0),
          step: Number(document.querySelector(`#${chartId}`).dataset.step)};
}
"""

# Records every step the snapshot label shows, so the test can tell that the
# page moved through several snapshots without a reload.
RECORD_STEPS_JS = """
window.__stepsShown = [];
new MutationObserver(() => {
  for (const label of document.querySelectorAll('[data-testid="snapshot-step"]')) {
    const step = Number(label.textContent);
    if (Number.isInteger(step) && !window.__stepsShown.includes(step)) {
      window.__stepsShown.push(step);
    }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""

# A cheap fingerprint of an <img>'s pixels, to tell two preview images apart.
IMAGE_FINGERPRINT_JS = """
(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0;
  for (let i = 0; i < pixels.length; i += 1) hash = (hash * 31 + pixels[i]) >>> 0;
  return `${canvas.width}x${canvas.height}:${hash}`;
}
"""


# ---- The server ----


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_start_time(pid: int) -> str | None:
    """Return the start time in /proc/PID/stat, or None for an ended or zombie process.

    The start time distinguishes a reused PID from the process that was recorded.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in brackets may contain spaces, so split after its closing bracket.
    fields = stat.rsplit(")", 1)[1].split()
    state, start_time = fields[0], fields[19]
    return None if state == "Z" else start_time


def _descendants(pid: int) -> list[tuple[int, str, int]]:
    """Return (pid, start time, parent pid) of every live descendant of `pid`, from /proc."""
    found: list[tuple[int, str, int]] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                start = _process_start_time(child)
                if start is not None:
                    found.append((child, start, parent))
                    pending.append(child)
    return found


@dataclass
class LabServer:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    children: list[tuple[int, str, int]] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
            return json.load(response)

    def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def stop(self) -> None:
        """Stop the server, then stop by PID any process it started that is still alive."""
        self.children = _descendants(self.process.pid) or self.children
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

        # NOTE: uvicorn (0.55 here) re-raises SIGTERM after its graceful shutdown, so
        # `biaslab serve` exits before stopping its embedded worker, which is stopped here.
        leftovers = [child for child in self.children if _process_start_time(child[0]) == child[1]]
        # Only the server's own children get SIGTERM: a Celery pool process that gets it is
        # replaced by a new one, which delays the worker's warm shutdown.
        for pid, _start, parent in leftovers:
            if parent == self.process.pid:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_SECONDS
        while time.monotonic() < deadline and any(
            _process_start_time(pid) == start for pid, start, _parent in leftovers
        ):
            time.sleep(0.2)
        for pid, start, _parent in leftovers:
            if _process_start_time(pid) == start:
                os.kill(pid, signal.SIGKILL)


def _biaslab_command() -> list[str]:
    script = shutil.which("biaslab") or str(Path(sys.executable).parent / "biaslab")
    if not Path(script).exists():
        pytest.fail("the biaslab command is not installed; run `pip install -e .` first")
    return [script]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    data_dir = tmp_path_factory.mktemp("lab")
    log_path = data_dir / "serve.log"
    port = _free_port()
    command = [*_biaslab_command(), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    lab = LabServer(f"http://127.0.0.1:{port}", log_path, process)

    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"biaslab serve exited with {process.returncode}:\n{lab.log()}")
            try:
                lab.get_json("/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"biaslab serve did not answer within {SERVER_START_SECONDS} s:\n{lab.log()}"
                )
            time.sleep(0.2)
        # Remember the embedded worker now: after the server exits it has no parent to find it by.
        lab.children = _descendants(process.pid)
        yield lab
    finally:
        lab.stop()


# ---- The browser ----


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}; set CHROMIUM_PATH")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class BrowserPage:
    page: Any
    errors: list[str]


@pytest.fixture
def tab(browser: Any) -> Iterator[BrowserPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield BrowserPage(page, errors)
    context.close()


@contextmanager
def explain_failure(tab: BrowserPage, server: LabServer, screenshot: Path) -> Iterator[None]:
    """On failure, save a screenshot and add its path, the page errors and the server log."""
    try:
        yield
    except (AssertionError, PlaywrightTimeoutError) as error:
        tab.page.screenshot(path=str(screenshot), full_page=True)
        log = server.log()
        print(f"--- biaslab serve log ({server.log_path}) ---\n{log}")
        raise AssertionError(
            f"{error}\nscreenshot: {screenshot}\npage errors: {tab.errors}\n"
            f"server log: {server.log_path}\n{log[-4000:]}"
        ) from error


def fill_design(page: Any, name: str, counts: str) -> None:
    page.fill("#name", name)
    page.fill("#dataset-counts", counts)
    page.select_option("#dataset-image-size", "32")
    for field_id, value in QUICK_TRAINING.items():
        page.fill(f"#{field_id}", value)


def wait_for_preview(page: Any) -> None:
    page.wait_for_function(
        """() => {
          const frame = document.getElementById("preview-frame");
          const img = document.getElementById("dataset-preview");
          return frame.dataset.state === "ready" && img.complete && img.naturalWidth > 0;
        }"""
    )


# ---- Tests ----


def test_preview_follows_counts(tab: BrowserPage, server: LabServer, tmp_path: Path) -> None:
    page = tab.page
    with explain_failure(tab, server, tmp_path / "designer.png"):
        page.goto(server.base_url + "/")
        wait_for_preview(page)
        image = page.locator("#dataset-preview")
        first_source = image.get_attribute("src")
        first_pixels = image.evaluate(IMAGE_FINGERPRINT_JS)
        assert image.evaluate("img => img.naturalWidth") > 0

        page.fill("#dataset-counts", "9")
        page.wait_for_function(
            "previous => document.getElementById('dataset-preview').src !== previous",
            arg=first_source,
        )
        wait_for_preview(page)

        assert image.evaluate("img => img.naturalWidth") > 0
        assert image.evaluate(IMAGE_FINGERPRINT_JS) != first_pixels
        assert page.locator("#preview-error").is_hidden()
        page.screenshot(path=str(tmp_path / "designer.png"), full_page=True)
    assert tab.errors == []


@pytest.mark.parametrize(
    ("counts", "field_name"),
    [("0, 4", "dataset.counts[0]"), ("2, 100", "dataset.counts[1]")],
)
def test_invalid_count_shows_server_message(
    tab: BrowserPage, server: LabServer, tmp_path: Path, counts: str, field_name: str
) -> None:
    page = tab.page
    studies_before = server.get_json("/api/studies")["count"]
    with explain_failure(tab, server, tmp_path / "designer-invalid.png"):
        page.goto(server.base_url + "/")
        wait_for_preview(page)
        fill_design(page, "invalid counts", counts)
        with page.expect_response(
            lambda response: (
                response.url.endswith("/api/studies") and response.request.method == "POST"
            )
        ) as response_info:
            page.click("#submit-study")
        response = response_info.value
        assert response.status == 422
        messages = [item["message"] for item in response.json()["detail"]]
        assert any(message.startswith(f"{field_name}:") for message in messages), messages

        counts_error = page.locator("#dataset-counts-error")
        counts_error.wait_for(state="visible")
        assert field_name in counts_error.inner_text()
        assert page.locator("#dataset-counts").get_attribute("aria-invalid") == "true"
        # Each message is shown once, in the server's words, next to its field. The
        # summary under the button and the preview box name the field.
        page_text = page.locator("body").inner_text()
        for message in messages:
            assert page_text.count(message) == 1, message
        assert "dataset.counts" in page.locator("#form-errors").inner_text()
        page.locator("#preview-error").wait_for(state="visible")
        assert "dataset.counts" in page.locator("#preview-error").inner_text()

        assert page.evaluate("location.pathname") == "/"
        assert page.locator("#submit-study").is_enabled()
        page.screenshot(path=str(tmp_path / "designer-invalid.png"), full_page=True)
    assert server.get_json("/api/studies")["count"] == studies_before


def test_study_page_updates_live(tab: BrowserPage, server: LabServer, tmp_path: Path) -> None:
    page = tab.page
    screenshot = tmp_path / "study-page.png"
    page.add_init_script(RECORD_STEPS_JS)
    with explain_failure(tab, server, screenshot):
        page.goto(server.base_url + "/")
        wait_for_preview(page)
        fill_design(page, "browser test: two and four dots", "2, 4")
        submitted = time.monotonic()
        page.click("#submit-study")
        page.wait_for_url(re.compile(r"/studies/\d+$"))
        study_id = int(page.url.rsplit("/", 1)[1])
        page.evaluate("window.__sameDocument = true")

        study = server.get_json(f"/api/studies/{study_id}")
        assert study["design"]["dataset"]["counts"] == [2, 4]
        assert study["design"]["training"]["steps"] == 120
        run_id = study["runs"][0]["id"]
        chart_id = f"feature-chart-{run_id}-count"
        run = page.locator(f"#run-{run_id}")
        # The page fills in the name once its first request for the study returns.
        page.wait_for_function(
            "name => document.getElementById('study-name').textContent === name",
            arg="browser test: two and four dots",
        )

        # The first generated histogram appears, then a later snapshot replaces it.
        page.wait_for_function(
            f"() => ({GENERATED_TRACE_JS})('{chart_id}')?.total > 0",
            timeout=FIRST_SNAPSHOT_TIMEOUT_MS,
        )
        first = page.evaluate(f"({GENERATED_TRACE_JS})('{chart_id}')")
        first_seconds = time.monotonic() - submitted
        page.wait_for_function(
            f"step => ({GENERATED_TRACE_JS})('{chart_id}')?.step > step",
            arg=first["step"],
            timeout=FIRST_SNAPSHOT_TIMEOUT_MS,
        )
        later = page.evaluate(f"({GENERATED_TRACE_JS})('{chart_id}')")
        assert later["total"] > 0
        assert later["y"] != first["y"] or later["name"] != first["name"]
        label = run.locator('[data-testid="snapshot-step"]').inner_text()
        assert int(label) >= later["step"]

        # The run ends, and the badge, the progress bar and the cancel button show it.
        run.locator('[data-testid="run-status"]', has_text="succeeded").wait_for(
            timeout=RUN_END_TIMEOUT_MS
        )
        progress = run.locator('[data-testid="run-progress"]')
        assert progress.evaluate("bar => bar.value === bar.max") is True
        assert run.locator('[data-testid="run-step"]').inner_text().startswith("step 120 of 120")
        assert run.locator('[data-testid="cancel-run"]').is_hidden()
        assert run.locator('[data-testid="run-error"]').is_hidden()

        # After the end the page shows the last stored snapshot, as the API reports it.
        snapshots = server.get_json(f"/api/runs/{run_id}/snapshots")["snapshots"]
        last = snapshots[-1]
        page.wait_for_function(
            f"step => document.getElementById('{chart_id}').dataset.step === String(step)",
            arg=last["step"],
        )
        share = last["histograms"]["count"]["unrecognized_share"]
        shown_share = run.locator('[data-testid="unrecognized-share"][data-feature="count"]')
        assert shown_share.inner_text() == f"{share * 100:.1f}%"
        # One chart per feature of the family, each with its own unrecognized share.
        features = server.get_json(f"/api/runs/{run_id}/features")["features"]
        for feature in features:
            chart = page.locator(f"#feature-chart-{run_id}-{feature['name']}")
            assert chart.get_attribute("data-step") == str(last["step"]), feature["name"]
        charts = run.locator('[data-testid="feature-chart"]')
        assert charts.count() == len(features)
        assert run.locator('[data-testid="unrecognized-share"]').count() == len(features)
        assert run.locator('[data-testid="scores"]').is_hidden(), "dots define no scores"
        grid = run.locator('[data-testid="sample-grid"]')
        grid.wait_for(state="visible")
        page.wait_for_function(
            f"() => {{ const img = document.getElementById('sample-grid-{run_id}');"
            " return img.complete && img.naturalWidth > 0; }"
        )
        loss_traces = page.evaluate(f"document.getElementById('loss-chart-{run_id}').data.length")
        assert loss_traces > 0

        steps_shown = page.evaluate("window.__stepsShown")
        assert len(steps_shown) >= 2, f"the page showed only snapshot steps {steps_shown}"
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(screenshot), full_page=True)
        # On a narrow window the charts shrink to fit instead of overflowing the page.
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_function(
            f"() => document.querySelector('#{chart_id} .main-svg')"
            ".getBoundingClientRect().right <= document.documentElement.clientWidth"
        )
        page.screenshot(path=str(tmp_path / "study-page-narrow.png"), full_page=True)

        # The study list on the designer page links to the study and shows the run's status.
        page.goto(server.base_url + "/")
        item = page.locator(f'.study-item[data-study-id="{study_id}"]')
        item.wait_for()
        assert item.locator("a").get_attribute("href") == f"/studies/{study_id}"
        assert item.locator('[data-testid="run-status"]').inner_text() == "succeeded"
        page.screenshot(path=str(tmp_path / "designer-with-study.png"), full_page=True)
    print(
        f"first histogram {first_seconds:.1f} s after submitting; "
        f"steps shown live {steps_shown}; screenshot {screenshot}"
    )
    assert tab.errors == []


def start_vae_study(
    server: LabServer, name: str, steps: int, snapshot_every: int
) -> tuple[int, int]:
    """Create a study of one VAE run on 32x32 images of 3 dots; return the study and run ids."""
    design = {
        "name": name,
        "dataset": {"family": "dots", "image_size": 32, "counts": [3]},
        "model": {"kind": "vae"},
        "training": {
            "steps": steps,
            "batch_size": 16,
            "snapshot_every": snapshot_every,
            "samples_per_snapshot": 64,
        },
    }
    status, study = server.post_json("/api/studies", design)
    assert status == 201, study
    return study["id"], study["run_ids"][0]


def test_cancel_button_cancels_run(tab: BrowserPage, server: LabServer, tmp_path: Path) -> None:
    page = tab.page
    study_id, run_id = start_vae_study(
        server, "browser test: cancel", steps=1_000_000, snapshot_every=1000
    )
    with explain_failure(tab, server, tmp_path / "study-cancel.png"):
        page.goto(f"{server.base_url}/studies/{study_id}")
        run = page.locator(f"#run-{run_id}")
        button = run.locator('[data-testid="cancel-run"]')
        button.click()
        run.locator('[data-testid="run-status"]', has_text="cancelled").wait_for(
            timeout=RUN_END_TIMEOUT_MS
        )
        assert button.is_hidden()
        assert server.get_json(f"/api/runs/{run_id}")["status"] == "cancelled"
        page.screenshot(path=str(tmp_path / "study-cancel.png"), full_page=True)
    assert tab.errors == []


def test_early_cancel_shows_loss(tab: BrowserPage, server: LabServer, tmp_path: Path) -> None:
    page = tab.page
    # A loss every 10 steps, and the only snapshot at the last of 20,000 steps.
    name = "browser test: cancel before the first snapshot"
    study_id, run_id = start_vae_study(server, name, steps=20_000, snapshot_every=20_000)
    deadline = time.monotonic() + RUN_END_TIMEOUT_MS / 1000
    while not server.get_json(f"/api/runs/{run_id}/metrics")["steps"]:
        assert time.monotonic() < deadline, "the run reported no loss in time"
        time.sleep(0.2)
    with explain_failure(tab, server, tmp_path / "study-cancel-early.png"):
        page.goto(f"{server.base_url}/studies/{study_id}")
        run = page.locator(f"#run-{run_id}")
        run.locator('[data-testid="cancel-run"]').click()
        run.locator('[data-testid="run-status"]', has_text="cancelled").wait_for(
            timeout=RUN_END_TIMEOUT_MS
        )
        page.wait_for_function(
            f"document.getElementById('loss-chart-{run_id}').data?.[0]?.x?.length > 0",
            timeout=RUN_END_TIMEOUT_MS,
        )
        assert run.locator(".loss-block").is_visible()
        # Without a snapshot, the probe's shares and the sample grid stay hidden.
        assert run.locator(".unrecognized-box").is_hidden()
        assert run.locator(".sample-grid-figure").is_hidden()
        placeholder = run.locator('[data-testid="chart-placeholder"]').inner_text()
        assert placeholder == "This run ended as cancelled before its first snapshot."
        assert server.get_json(f"/api/runs/{run_id}/snapshots")["snapshots"] == []
    assert tab.errors == []


def test_study_page_shows_every_feature(
    tab: BrowserPage, server: LabServer, tmp_path: Path
) -> None:
    page = tab.page
    screenshot = tmp_path / "study-combinations.png"
    design = {
        "name": "browser test: combinations",
        "dataset": {"family": "combinations", "image_size": 32, "combinations": 5},
        "model": {"kind": "vae", "z_dim": 8},
        "training": {
            "steps": 20,
            "batch_size": 16,
            "snapshot_every": 10,
            "samples_per_snapshot": 64,
        },
    }
    status, study = server.post_json("/api/studies", design)
    assert status == 201, study
    run_id = study["run_ids"][0]
    with explain_failure(tab, server, screenshot):
        page.goto(f"{server.base_url}/studies/{study['id']}")
        run = page.locator(f"#run-{run_id}")
        run.locator('[data-testid="run-status"]', has_text="succeeded").wait_for(
            timeout=RUN_END_TIMEOUT_MS
        )
        last = server.get_json(f"/api/runs/{run_id}/snapshots")["snapshots"][-1]
        features = server.get_json(f"/api/runs/{run_id}/features")["features"]
        assert [feature["name"] for feature in features][:4] == ["size", "x", "y", "red_share"]

        # One chart per feature, each showing the last snapshot's generated bars.
        for feature in features:
            chart_id = f"feature-chart-{run_id}-{feature['name']}"
            page.wait_for_function(
                f"step => ({GENERATED_TRACE_JS})('{chart_id}')?.step === step",
                arg=last["step"],
            )
        assert run.locator('[data-testid="feature-chart"]').count() == len(features)
        for feature in features:
            shown = run.locator(
                f'[data-testid="unrecognized-share"][data-feature="{feature["name"]}"]'
            )
            share = last["histograms"][feature["name"]]["unrecognized_share"]
            assert shown.inner_text() == f"{share * 100:.1f}%", feature["name"]

        # The combinations family scores its samples; the page lists the scores.
        scores = run.locator('[data-testid="scores"]')
        assert scores.is_visible()
        for name, value in last["scores"].items():
            shown = scores.locator(f'[data-score="{name}"]').inner_text()
            assert shown == ("no value" if value is None else f"{value:.3f}"), name
        assert "dataset: combinations" in page.locator("#design-summary").inner_text().lower()

        # The run lists its training cells, in the order of the features endpoint.
        cells = server.get_json(f"/api/runs/{run_id}/features")["training_cells"]
        assert len(cells) == 5
        shown_cells = run.locator('[data-testid="training-cells"]')
        assert shown_cells.locator("summary").inner_text() == "Training cells: 5 (size/x/y/red)"
        assert shown_cells.locator("li").all_text_contents() == [
            f"{cell['size']}/{cell['x']}/{cell['y']}/{cell['red']}" for cell in cells
        ]
        page.screenshot(path=str(screenshot), full_page=True)
    assert tab.errors == []
