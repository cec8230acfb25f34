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

from biaslab.settings import Settings
from biaslab.store.migrate import check_current
from worker.app import make_celery

logger = logging.getLogger("worker")

CUDA_CHECK_TIMEOUT_SECONDS = 120


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "--queues",
        help="comma-separated queues to consume; the default queue when unset",
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
    return args


def check_start_up(settings: Settings) -> None:
    """Raise SystemExit with a clear message when the worker could not train a run."""
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

    if settings.device == "cuda":
        _check_cuda()


def _check_cuda() -> None:
    # In a child process, so this process never initializes CUDA before it forks
    # its pool.
    probe = "from biaslab.training.device import select_device; select_device('cuda')"
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.loglevel,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    # Alembic logs each schema check at INFO; the worker only cares when it fails.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings()
    check_start_up(settings)

    app = make_celery(settings)
    worker_args = [
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
        f"--hostname={args.hostname or f'biaslab-{os.getpid()}@%h'}",
    ]
    if args.queues:
        worker_args.append(f"--queues={args.queues}")
    logger.info("starting worker: %s", " ".join(worker_args[1:]))
    app.worker_main(worker_args)


if __name__ == "__main__":
    main()
