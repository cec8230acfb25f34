"""Start `biaslab serve` as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_lab(
    data_dir: Path, *, worker: bool, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Yield the base URL of a lab served from `data_dir`; print its log if the block fails."""
    port = free_port()
    log_path = data_dir / "serve.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "backend.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--worker" if worker else "--no-worker",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"biaslab serve exited with {process.returncode}")
            try:
                # The sign-in state returns 200 with authentication on or off.
                if httpx.get(f"{base_url}/api/session", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"biaslab serve did not answer within {STARTUP_SECONDS} s")
            time.sleep(0.2)
        yield base_url
    except BaseException:
        sys.stderr.write(
            f"--- biaslab serve log ({log_path}) ---\n{log_path.read_text(errors='replace')}\n"
        )
        raise
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
