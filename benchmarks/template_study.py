"""Run a study template from the browser, wait for its runs and print what its analysis found.

The script starts `biaslab serve` (SQLite and the embedded worker) on 127.0.0.1,
opens the home page in headless Chromium, clicks the template's "Create" button
and waits on the study page until every run has ended. It then saves screenshots
of the study page and its analysis panel and the analysis JSON. The report
shows, for each mixture condition, the observed distribution against the
additive prediction of the single-mode runs, the share between the trained
values and the prototype-enhancement index, each with its bootstrap interval
over seeds.

    python benchmarks/template_study.py                      # counts-2-4, quick preset
    python benchmarks/template_study.py --study-id 1 --data-dir DIR   # resume or report

The quick preset of counts-2-4 trains 18 runs, an estimated one to two hours on 2
idle CPU cores.

Exit status: 0 when every run succeeded and the report is complete, 1 when a
run failed or was cancelled, the time limit passed or a step failed, 130 when
interrupted. The data folder is kept, so `--study-id ID --data-dir DIR` resumes
an interrupted study.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

logger = logging.getLogger("template_study")

CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# The flags of the browser tests (tests/test_browser.py): no sandbox, GPU or background traffic.
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

ENDED = ("succeeded", "failed", "cancelled")
SERVER_START_SECONDS = 60
SERVER_STOP_SECONDS = 20
POLL_SECONDS = 5
PROGRESS_SECONDS = 30
# Consecutive failed requests to the server before the wait gives up.
MAX_REQUEST_FAILURES = 6
# Playwright timeouts are in milliseconds.
PAGE_TIMEOUT_MS = 30_000
TEMPLATES_TIMEOUT_MS = 60_000
# The study page requests the analysis with its figures in one request, and the bootstrap
# intervals over many runs make it the slowest request of the page.
ANALYSIS_TIMEOUT_MS = 180_000
# Bins whose observed and predicted shares are both below this are left out of the report.
MIN_SHOWN_SHARE = 0.0005

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

# True once the analysis panel shows `entries` modes entries, `charts` of them with a
# drawn chart, and every chart of the panel is drawn (Plotly adds .main-svg).
ANALYSIS_DRAWN_JS = """
([entries, charts]) => {
  const panel = document.getElementById("analysis");
  if (!panel || panel.hidden || !document.getElementById("analysis-methods").textContent) {
    return false;
  }
  const modes = panel.querySelectorAll('[data-testid="modes-entry"]');
  const drawn = [...panel.querySelectorAll("#analysis-modes .analysis-chart")]
    .filter((chart) => chart.querySelector(".main-svg")).length;
  const all = [...panel.querySelectorAll(".analysis-chart")];
  return modes.length === entries && drawn >= charts
    && all.every((chart) => chart.querySelector(".main-svg"));
}
"""


class StudyError(Exception):
    """A step of the study failed. The message names the step and what to do next."""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


# ---- The server ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_time(pid: int) -> str | None:
    """Return the start time in /proc/PID/stat, or None for an ended or zombie process.

    The start time distinguishes a reused PID from the process that was recorded.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in brackets may contain spaces, so split after its closing bracket.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


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
                start = _start_time(child)
                if start is not None:
                    found.append((child, start, parent))
                    pending.append(child)
    return found


def _biaslab_command() -> list[str]:
    """Return the `biaslab` command of this Python environment."""
    script = Path(sys.executable).parent / "biaslab"
    if script.exists():
        return [str(script)]
    found = shutil.which("biaslab")
    if found is None:
        raise StudyError("the biaslab command is not installed; run `pip install -e .[dev]` first")
    return [found]


@dataclass
class LabServer:
    """A `biaslab serve` subprocess with its embedded worker."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    children: list[tuple[int, str, int]] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, port: int, log_path: Path) -> LabServer:
        command = [*_biaslab_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--data-dir", str(data_dir)]
        with log_path.open("wb") as log:
            # A session of its own, so that Ctrl-C reaches this script alone and the
            # server stops in the order that `stop` sets.
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        logger.info("started biaslab serve as process %s (log %s)", process.pid, log_path)
        return cls(f"http://127.0.0.1:{port}", process, log_path)

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise StudyError(
                    f"biaslab serve exited with code {self.process.returncode} at start; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                self.get_json("/api/studies", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise StudyError(
                    f"biaslab serve did not respond on {self.base_url} within "
                    f"{SERVER_START_SECONDS} s; its log ({self.log_path}) ends with:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)
        # Recorded now: once the server has exited, its worker has no parent to find it by.
        self.children = _descendants(self.process.pid)
        logger.info("biaslab serve responds on %s", self.base_url)

    def get_json(self, path: str, timeout: float = 30) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
            return json.load(response)

    def stop(self) -> None:
        """Stop the server, then by PID every process it started that is still alive."""
        self.children = _descendants(self.process.pid) or self.children
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "biaslab serve did not stop within %s s; killing it", SERVER_STOP_SECONDS
                )
                self.process.kill()
                self.process.wait()

        # NOTE: uvicorn 0.55 re-raises SIGTERM after its graceful shutdown (exit code -15),
        # and the embedded worker can outlive the server, so leftovers are stopped here.
        leftovers = [child for child in self.children if _start_time(child[0]) == child[1]]
        # Only the server's own children get SIGTERM: a Celery pool process that gets it
        # is replaced by a new one, which delays the worker's warm shutdown.
        for pid, _start, parent in leftovers:
            if parent == self.process.pid:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_SECONDS
        while time.monotonic() < deadline and any(
            _start_time(pid) == start for pid, start, _parent in leftovers
        ):
            time.sleep(0.2)
        for pid, start, _parent in leftovers:
            if _start_time(pid) == start:
                logger.warning("process %s of the server is still alive; killing it", pid)
                os.kill(pid, signal.SIGKILL)
        logger.info("stopped biaslab serve (exit code %s)", self.process.returncode)


@contextmanager
def running_server(data_dir: Path, port: int, log_path: Path) -> Iterator[LabServer]:
    server = LabServer.start(data_dir, port, log_path)
    try:
        server.wait_ready()
        yield server
    finally:
        # A second Ctrl-C must not cut the stop short and leave the worker training.
        previous = (
            signal.signal(signal.SIGINT, signal.SIG_IGN),
            signal.signal(signal.SIGTERM, signal.SIG_IGN),
        )
        try:
            server.stop()
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


# ---- The browser ----


@contextmanager
def browser_page(page_errors: list[str]) -> Iterator[Page]:
    """Open a headless Chromium page. Uncaught errors and console errors go to `page_errors`."""
    if not CHROMIUM_PATH.exists():
        raise StudyError(f"no Chromium at {CHROMIUM_PATH}; install it or set CHROMIUM_PATH")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS
        )
        logger.info("started Chromium %s", browser.version)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(f"uncaught: {error}"))
            page.on(
                "console",
                lambda message: (
                    page_errors.append(f"console: {message.text}")
                    if message.type == "error"
                    else None
                ),
            )
            yield page
        finally:
            # A Ctrl-C in a terminal also reaches Playwright's driver, which then closes
            # Chromium itself, so closing it here may find the connection gone.
            try:
                browser.close()
            except PlaywrightError as error:
                logger.warning("closing Chromium failed: %s", error)
    finally:
        try:
            playwright.stop()
        except PlaywrightError as error:
            logger.warning("stopping Playwright failed: %s", error)
        logger.info("stopped Chromium")


def create_from_template(page: Page, base_url: str, template: str, preset: str) -> int:
    """Click the template's create button on the home page and return the new study's id."""
    page.goto(base_url + "/")
    cards = page.locator('[data-testid="template"]')
    errors = page.locator("#templates-error")
    try:
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"template\"]')"
            " || !document.getElementById('templates-error').hidden",
            timeout=TEMPLATES_TIMEOUT_MS,
        )
    except PlaywrightError as error:
        seconds = TEMPLATES_TIMEOUT_MS // 1000
        raise StudyError(
            f"the home page showed no templates within {seconds} s: {error}"
        ) from error
    if errors.is_visible():
        raise StudyError(f"the home page failed to load the templates: {errors.inner_text()}")

    button = page.locator(
        f'[data-testid="template-create"][data-template="{template}"][data-preset="{preset}"]'
    )
    if button.count() == 0:
        found = page.eval_on_selector_all(
            '[data-testid="template-create"]',
            "buttons => buttons.map((b) => `${b.dataset.template} ${b.dataset.preset}`)",
        )
        raise StudyError(
            f"no create button for --template {template!r} with --preset {preset!r} among "
            f"the {cards.count()} templates of the home page; the buttons are: {', '.join(found)}"
        )
    print(f"clicking {button.inner_text()!r} of template {template!r}", flush=True)
    button.click()
    try:
        page.wait_for_url(re.compile(r"/studies/\d+$"), timeout=PAGE_TIMEOUT_MS)
    except PlaywrightError as error:
        message = errors.inner_text() if errors.is_visible() else str(error)
        raise StudyError(f"creating the study from the template failed: {message}") from error
    return int(page.url.rsplit("/", 1)[1])


def capture_analysis(page: Page, base_url: str, study_id: int, analysis: Any, out: Path) -> None:
    """Open the study page, wait for its analysis charts and save two screenshots to `out`."""
    page.goto(f"{base_url}/studies/{study_id}")
    panel = page.locator("#analysis")
    panel.wait_for(state="visible")
    panel.scroll_into_view_if_needed()
    entries = analysis["modes"]
    charts = sum(1 for entry in entries if entry.get("observed"))
    try:
        page.wait_for_function(
            ANALYSIS_DRAWN_JS, arg=[len(entries), charts], timeout=ANALYSIS_TIMEOUT_MS
        )
    finally:
        # Saved even when the charts did not render, to show what the page had.
        page.screenshot(path=str(out / f"study-{study_id}.png"), full_page=True)
        panel.screenshot(path=str(out / f"study-{study_id}-analysis.png"))
        print(f"saved screenshots study-{study_id}.png and study-{study_id}-analysis.png in {out}")


# ---- Waiting for the runs ----


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:3d}m{seconds:02d}s"


def progress_line(study: Any, elapsed: float) -> str:
    runs = study["runs"]
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run["status"]] = by_status.get(run["status"], 0) + 1
    ended = sum(by_status.get(status, 0) for status in ENDED)
    ended_parts = [f"{by_status[status]} {status}" for status in ENDED if by_status.get(status)]
    running = [
        f"run {run['index'] + 1} at step {run['step']}/{run['steps']}"
        for run in runs
        if run["status"] == "running"
    ]
    line = f"[{_elapsed(elapsed)}] {ended}/{len(runs)} runs ended"
    if ended_parts:
        line += f" ({', '.join(ended_parts)})"
    line += f"; running: {', '.join(running) or 'none'}; queued: {by_status.get('queued', 0)}"
    return line


def wait_for_runs(server: LabServer, study_id: int, started: float, deadline: float) -> Any:
    """Poll the study until every run has ended or `deadline` passes, and return its last JSON."""
    reported_failures: set[int] = set()
    request_failures = 0
    next_progress = time.monotonic()
    while True:
        if server.process.poll() is not None:
            raise StudyError(
                f"biaslab serve exited with code {server.process.returncode} while the runs "
                f"trained; its log ({server.log_path}) ends with:\n{server.log_tail()}"
            )
        try:
            study = server.get_json(f"/api/studies/{study_id}")
            request_failures = 0
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            request_failures += 1
            logger.warning(
                "GET /api/studies/%s failed (%s of %s): %s",
                study_id,
                request_failures,
                MAX_REQUEST_FAILURES,
                error,
            )
            if request_failures >= MAX_REQUEST_FAILURES:
                raise StudyError(
                    f"GET /api/studies/{study_id} failed {request_failures} times in a row: {error}"
                ) from error
            time.sleep(POLL_SECONDS)
            continue

        for run in study["runs"]:
            if run["status"] == "failed" and run["id"] not in reported_failures:
                reported_failures.add(run["id"])
                print(f"run {run['index'] + 1} (id {run['id']}) failed: {run['error']}", flush=True)
        now = time.monotonic()
        all_ended = all(run["status"] in ENDED for run in study["runs"])
        if all_ended or now >= deadline or now >= next_progress:
            print(progress_line(study, now - started), flush=True)
            next_progress = now + PROGRESS_SECONDS
        if all_ended or now >= deadline:
            return study
        time.sleep(POLL_SECONDS)


# ---- The report ----


def share(estimate: Any) -> str:
    """Format a share estimate as `38.1% [30.2%, 45.0%]`, or `undefined` without a value."""
    if not estimate or estimate.get("value") is None:
        return "undefined"
    text = f"{estimate['value']:.1%}"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{estimate['low']:.1%}, {estimate['high']:.1%}]"
    return text


def number(estimate: Any, digits: int = 2) -> str:
    """Format an estimate as `3.17 [2.41, 4.02]`, or `undefined` without a value."""
    if not estimate or estimate.get("value") is None:
        return "undefined"
    text = f"{estimate['value']:.{digits}f}"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{estimate['low']:.{digits}f}, {estimate['high']:.{digits}f}]"
    return text


def group_title(labels: dict[str, str], runs: list[int]) -> str:
    """Name a group by the sweep labels it shares, without the seed, as the study page does."""
    shown = [f"{axis} {label}" for axis, label in labels.items() if axis != "seed"]
    return ", ".join(shown) if shown else "runs " + ", ".join(str(index + 1) for index in runs)


def _run_numbers(indices: list[int]) -> str:
    return ", ".join(str(index + 1) for index in indices) or "none"


def why_undefined(entry: Any) -> str:
    """Say why a modes entry has no prototype-enhancement index."""
    reasons = []
    if not entry.get("observed"):
        reasons.append("the mixture runs recognized no samples")
    if entry.get("missing_controls"):
        missing = " or ".join(json.dumps(mode) for mode in entry["missing_controls"])
        reasons.append(f"no run trained on {missing} alone has recognized samples")
    if not entry.get("between"):
        reasons.append("no bin lies between the trained values")
    if not reasons:
        reasons.append("the predicted share between the trained values is 0")
    return ", and ".join(reasons)


def modes_lines(entry: Any) -> list[str]:
    title = group_title(entry["labels"], entry["runs"])
    controls = "; ".join(
        f"{json.dumps(control['mode'])} alone: runs {_run_numbers(control['runs'])}"
        for control in entry["controls"]
    )
    lines = [
        f"{title}: {entry['feature']}",
        f"  mixture runs {_run_numbers(entry['runs'])}; controls {controls}",
    ]
    observed = entry.get("observed")
    if not observed:
        lines.append(f"  no observed distribution: {why_undefined(entry)}")
        return lines

    prediction = entry.get("prediction") or [None] * len(observed)
    lines.append(f"  {entry['feature']:>8}  {'observed':<24}  additive prediction")
    for label, seen, predicted in zip(entry["bins"], observed, prediction, strict=True):
        values = [estimate["value"] or 0.0 for estimate in (seen, predicted) if estimate]
        if max(values, default=0.0) < MIN_SHOWN_SHARE:
            continue
        lines.append(f"  {label:>8}  {share(seen):<24}  {share(predicted)}")
    between = ", ".join(entry.get("between") or []) or "none"
    lines.append(
        f"  share between the trained values ({between}): observed "
        f"{share(entry.get('observed_between'))}, predicted {share(entry.get('predicted_between'))}"
    )
    ratio = entry.get("enhancement_ratio")
    index_text = number(ratio)
    if ratio and ratio.get("value") is not None:
        index_text += f" over {ratio['seeds']} seeds"
    else:
        index_text += f" ({why_undefined(entry)})"
    lines.append(f"  prototype-enhancement index (observed / predicted between): {index_text}")
    lines.append(
        f"  observed minus predicted share between: {share(entry.get('enhancement_difference'))}"
    )
    if entry.get("most_likely") is not None:
        where = " (between the trained values)" if entry.get("most_likely_between") else ""
        lines.append(f"  most likely value: {entry['most_likely']}{where}")
    return lines


def last_unrecognized(server: LabServer, run: Any) -> str:
    """Return the unrecognized share of each feature at the run's last snapshot."""
    snapshots = server.get_json(f"/api/runs/{run['id']}/snapshots")["snapshots"]
    if not snapshots:
        return "no snapshot"
    last = max(snapshots, key=lambda snapshot: snapshot["step"])
    parts = [
        f"{name} {histogram['unrecognized_share']:.1%}"
        for name, histogram in last["histograms"].items()
    ]
    return f"step {last['step']}: " + ", ".join(parts)


def report_lines(server: LabServer, study: Any, analysis: Any) -> list[str]:
    methods = analysis["methods"]["intervals"]
    labels = {entry["index"]: entry["labels"] for entry in analysis["runs"]}
    lines = [
        f"study {study['id']} {study['name']!r}: {len(study['runs'])} runs",
        f"shares are of recognized samples; intervals: {methods['confidence']:.0%} "
        f"{methods['method']} ({methods['resamples']} resamples)",
        "",
        "several modes: observed against the additive prediction of the single-mode runs",
    ]
    if not analysis["modes"]:
        lines.append("  no entry: no mixture run has a snapshot yet, or the design has no modes")
    for entry in analysis["modes"]:
        lines += modes_lines(entry)
    lines += ["", "runs: status, sweep labels, unrecognized share at the last snapshot"]
    for run in study["runs"]:
        run_labels = ", ".join(
            f"{axis} {label}" for axis, label in labels.get(run["index"], {}).items()
        )
        lines.append(
            f"  run {run['index'] + 1:>3} {run['status']:<9} {run_labels or '(no snapshot yet)'}: "
            f"{last_unrecognized(server, run)}"
        )

    lines += ["", "prototype-enhancement index found:"]
    for entry in analysis["modes"]:
        ratio = entry.get("enhancement_ratio")
        found = number(ratio)
        found += (
            f" over {ratio['seeds']} seeds"
            if ratio and ratio.get("value") is not None
            else f" ({why_undefined(entry)})"
        )
        lines.append(f"  {group_title(entry['labels'], entry['runs'])}: {found}")
    if not analysis["modes"]:
        lines.append("  none")
    return lines


# ---- Main ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a study template from the browser and print what its analysis found."
    )
    parser.add_argument(
        "--template", default="counts-2-4", help="template name (GET /api/templates)"
    )
    parser.add_argument("--preset", default="quick", help="template preset: quick or full")

    parser.add_argument(
        "--data-dir", type=Path, help="the lab's data folder; default: a new temporary folder"
    )
    parser.add_argument("--port", type=int, help="TCP port for biaslab serve; default: a free one")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("template-study-out"),
        help="folder for the screenshots, the analysis JSON and the report",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=120,
        help="minutes after which the script stops waiting for the runs, saves what it has "
        "and exits with 1",
    )
    parser.add_argument(
        "--study-id",
        type=int,
        help="report on this existing study of --data-dir instead of creating one; "
        "its unfinished runs train first",
    )

    args = parser.parse_args(argv)
    # The names go into a CSS attribute selector, so they are limited to the characters of
    # template and preset names.
    for option, value in (("--template", args.template), ("--preset", args.preset)):
        if not NAME_PATTERN.fullmatch(value):
            parser.error(f"{option}: {value!r} is invalid; use letters, digits, '-' and '_'")
    if args.study_id is not None and args.data_dir is None:
        parser.error("--study-id needs --data-dir, the folder of the lab that holds the study")
    if args.study_id is not None and args.study_id < 1:
        parser.error(f"--study-id: {args.study_id} is invalid; study ids start at 1")
    if args.port is not None and not 1 <= args.port <= 65535:
        parser.error(f"--port: {args.port} is invalid; use 1 to 65535")
    if args.max_minutes <= 0:
        parser.error(f"--max-minutes: {args.max_minutes} is invalid; use a positive number")
    return args


def run_problems(study: Any, max_minutes: float) -> list[str]:
    """Return a line for each run that did not succeed, and one if some had not ended."""
    problems = []
    unfinished = [run for run in study["runs"] if run["status"] not in ENDED]
    if unfinished:
        problems.append(
            f"stopped waiting after --max-minutes {max_minutes:g}: "
            f"{len(unfinished)} of {len(study['runs'])} runs had not ended"
        )
    for run in study["runs"]:
        if run["status"] in ("failed", "cancelled"):
            reason = f": {run['error']}" if run["error"] else ""
            problems.append(f"run {run['index'] + 1} (id {run['id']}) {run['status']}{reason}")
    return problems


def save_and_report(page: Page, server: LabServer, study: Any, out: Path) -> list[str]:
    """Save the analysis JSON and screenshots and print the report. Return the problems found."""
    study_id = study["id"]
    problems = []
    analysis = server.get_json(f"/api/studies/{study_id}/analysis", timeout=300)
    (out / f"study-{study_id}-analysis.json").write_text(json.dumps(analysis, indent=1))
    (out / f"study-{study_id}.json").write_text(json.dumps(study, indent=1))
    try:
        capture_analysis(page, server.base_url, study_id, analysis, out)
    except PlaywrightError as error:
        problems.append(f"the analysis panel did not finish drawing its charts: {error}")

    lines = report_lines(server, study, analysis)
    (out / f"study-{study_id}-report.txt").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(
        f"\nsaved study-{study_id}-analysis.json, study-{study_id}.json and "
        f"study-{study_id}-report.txt in {out}"
    )
    return problems


def run_study(args: argparse.Namespace, data_dir: Path, page_errors: list[str]) -> int:
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    study_id: int | None = args.study_id

    try:
        with ExitStack() as stack:
            server = stack.enter_context(
                running_server(data_dir, args.port or free_port(), out / "serve.log")
            )
            page = stack.enter_context(browser_page(page_errors))
            if study_id is None:
                study_id = create_from_template(page, server.base_url, args.template, args.preset)
                print(f"created study {study_id}: {server.base_url}/studies/{study_id}", flush=True)
            else:
                try:
                    server.get_json(f"/api/studies/{study_id}")
                except urllib.error.HTTPError as error:
                    raise StudyError(
                        f"--study-id {study_id}: GET /api/studies/{study_id} returned "
                        f"{error.code} in the lab of {data_dir}"
                    ) from error
                page.goto(f"{server.base_url}/studies/{study_id}")

            study = wait_for_runs(server, study_id, started, deadline)
            problems += run_problems(study, args.max_minutes)
            problems += save_and_report(page, server, study, out)
    finally:
        if study_id is not None:
            print(
                f"data folder: {data_dir}; resume or report again with "
                f"--study-id {study_id} --data-dir {data_dir}",
                flush=True,
            )
        elif args.data_dir is None:
            # The temporary folder contains no study, so nothing in it is worth keeping.
            shutil.rmtree(data_dir, ignore_errors=True)

    if page_errors:
        print(f"the browser reported {len(page_errors)} errors; the first: {page_errors[:3]}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # SIGINT too: a shell without job control starts background commands with SIGINT
    # ignored, and then `kill -INT` would not stop the study.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="biaslab-template-"))
    page_errors: list[str] = []
    try:
        return run_study(args, data_dir.resolve(), page_errors)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except PlaywrightError as error:
        print(f"error: the browser step failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; the server and the browser are stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
