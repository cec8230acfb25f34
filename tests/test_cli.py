"""The `biaslab` command as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.server import running_lab

STOP_SECONDS = 30


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_serve_stops_embedded_worker(tmp_path):
    with running_lab(tmp_path, worker=True):
        time.sleep(1)
    log = (tmp_path / "serve.log").read_text()
    started = re.search(r"embedded worker started as process (\d+)", log)
    assert started, f"serve did not log the worker's process id:\n{log}"
    worker_pid = int(started.group(1))
    deadline = time.monotonic() + STOP_SECONDS
    while process_alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(worker_pid), "the embedded worker outlived `biaslab serve`"


def test_serve_prints_url(tmp_path):
    with running_lab(tmp_path, worker=False) as base_url:
        pass
    assert f"biaslab is serving on {base_url}/" in (tmp_path / "serve.log").read_text()


def test_db_upgrade_reports_current(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "db", "upgrade", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert "database schema is up to date" in result.stdout
    assert (tmp_path / "biaslab.sqlite").is_file()


def worker_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"embedded worker started as process (\d+)", log)]


def test_serve_restarts_dead_worker(tmp_path):
    log_path = tmp_path / "serve.log"
    with running_lab(tmp_path, worker=True):
        deadline = time.monotonic() + STOP_SECONDS
        while not worker_pids(log_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        (first,) = worker_pids(log_path.read_text())
        os.kill(first, signal.SIGKILL)
        while len(worker_pids(log_path.read_text())) < 2 and time.monotonic() < deadline + 30:
            time.sleep(0.2)
        log = log_path.read_text()
    assert "exited with code -9; restarting it" in log, f"serve did not report the death:\n{log}"
    pids = worker_pids(log)
    assert len(pids) == 2, f"expected one restart, saw worker processes {pids}"
    assert pids[1] != first


def run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_invalid_setting_is_one_line(tmp_path):
    result = run_cli("db", "upgrade", "--data-dir", str(tmp_path), env={"BIASLAB_DEVICE": "gpu"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: BIASLAB_DEVICE='gpu' is invalid: Input should be 'auto', 'cpu' or 'cuda'"
    )


def test_unwritable_data_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    data_dir = blocker / "data"
    result = run_cli("db", "upgrade", "--data-dir", str(data_dir), env={})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: cannot create the data folder '{data_dir}': ")
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_line(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = run_cli("db", "upgrade", env={"BIASLAB_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach the database at {url}: ")
    assert "Traceback" not in result.stderr
