"""`python -m worker`: check the database, artifact folder and device, then run a Celery worker.

One run at a time per worker by default: a training run uses all the cores or
the GPU it is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from sqlalchemy.exc import SQLAlchemyError

from biaslab.queue import DEFAULT_QUEUE, parse_queues
from biaslab.settings import Settings
from biaslab.store.migrate import check_current
from worker.app import make_celery

logger = logging.getLogger("worker")

CUDA_CHECK_TIMEOUT_SECONDS = 120


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "--queues",
        default=DEFAULT_QUEUE,
        help=(
            "comma-separated queues to consume: cpu, gpu or cpu,gpu (default: cpu); "
            "a worker on gpu needs a CUDA GPU"
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="pool processes, each training one run at a time (default: 1)",
    )
    parser.add_argument(
        "--hostname",
        help="Celery node name (default: biaslab-PID@HOST)",
    )
    parser.add_argument(
        "--loglevel",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default: INFO)",
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency {args.concurrency} is invalid; use 1 or more")
    try:
        args.queues = parse_queues(args.queues)
    except ValueError as error:
        parser.error(f"--queues: {error}")
    return args


def check_start_up(settings: Settings, queues: list[str] | None = None) -> str:
    """Raise SystemExit with a clear message when the worker could not train a run.

    Returns the device the worker trains on, described for the workers page.
    """
    url = settings.resolved_database_url
    try:
        check_current(url)
    except RuntimeError as error:
        raise SystemExit(f"worker not started: {error}") from error
    except SQLAlchemyError as error:
        raise SystemExit(f"worker not started: database unreachable: {error}") from error

    artifact_dir = settings.resolved_artifact_dir
    try:
        artifact_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(
            f"worker not started: artifact folder {artifact_dir} cannot be created: {error}"
        ) from error

    if "gpu" in (queues or []):
        if settings.device == "cpu":
            raise SystemExit(
                "worker not started: --queues gpu takes runs that asked for a GPU, but "
                "BIASLAB_DEVICE=cpu; set BIASLAB_DEVICE=cuda or auto, or consume --queues cpu"
            )
        return _probe_device("cuda")
    if settings.device == "cpu":
        return "cpu"
    return _probe_device(settings.device)


def _probe_device(preference: str) -> str:
    """Select the device in a child process and return its description; exit when that fails."""
    # In a child process, so this process never initializes CUDA before it forks
    # its pool.
    probe = (
        "from biaslab.training.device import describe_device, select_device; "
        f"print(describe_device(select_device({preference!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=CUDA_CHECK_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no error output"]
        raise SystemExit(f"worker not started: {lines[-1]}")
    return (result.stdout.strip().splitlines() or [preference])[-1]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.loglevel,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    # Alembic logs each schema check at INFO; the worker only cares when it fails.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings()
    device = check_start_up(settings, args.queues)

    app = make_celery(settings, device=device)
    worker_args = [
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
        f"--hostname={args.hostname or f'biaslab-{os.getpid()}@%h'}",
    ]
    worker_args.append(f"--queues={','.join(args.queues)}")
    logger.info("starting worker: %s", " ".join(worker_args[1:]))
    app.worker_main(worker_args)


if __name__ == "__main__":
    main()
