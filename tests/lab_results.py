"""Helpers for API tests of results: a lab on SQLite or PostgreSQL, and a sweep's results.

The results are written through the store functions the worker calls, with
histograms made from known counts, so every analysis of them has a known answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis
from sqlalchemy import text, update

from biaslab.families.dots import COUNT_FEATURE
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Base, Run, RunStatus, utcnow
from biaslab.store.runs import add_metrics, add_snapshot, save_training_histograms

# Two mixture runs on {2, 4} and two control runs each on {2} and on {4}, over two seeds.
SWEEP_STUDY = {
    "name": "two and four dots, with controls",
    "dataset": {"family": "dots", "image_size": 32, "counts": [2, 4]},
    "model": {"kind": "vae", "architecture": "conv", "z_dim": 8},
    "training": {"steps": 40, "batch_size": 8, "snapshot_every": 20, "samples_per_snapshot": 64},
    "sweep": [
        {
            "name": "dataset",
            "path": "dataset.counts",
            "values": [[2, 4], [2], [4]],
            "labels": ["2 and 4", "2", "4"],
        },
        {"name": "seed", "path": "training.seed", "values": [0, 1]},
    ],
}

# Generated counts per run index at the last step (40): the mixture makes mostly 3 dots.
GENERATED_AT_40: dict[int, dict[int, int]] = {
    0: {2: 20, 3: 60, 4: 20},
    1: {2: 25, 3: 50, 4: 25},
    2: {1: 10, 2: 80, 3: 10},
    3: {1: 10, 2: 80, 3: 10},
    4: {3: 10, 4: 80, 5: 10},
    5: {3: 10, 4: 80, 5: 10},
}
UNRECOGNIZED_AT_40 = 20


@contextmanager
def lab_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Yield settings of an upgraded database: SQLite, or PostgreSQL emptied afterwards."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
        upgrade(settings.resolved_database_url)
        yield settings
        return
    url = request.getfixturevalue("postgres_url")
    broker = request.getfixturevalue("redis_url")
    upgrade(url)
    try:
        yield Settings(data_dir=tmp_path, database_url=url, broker_url=broker)
    finally:
        engine = make_engine(url)
        with engine.begin() as connection:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        redis.Redis.from_url(broker).flushdb()


def counts_of(numbers: Mapping[int, int], unrecognized: int = 0) -> np.ndarray:
    values = [float(count) for count, times in numbers.items() for _ in range(times)]
    return np.asarray(values + [np.nan] * unrecognized)


def write_sweep_results(settings: Settings, run_ids: list[int], grid: bytes | None = None) -> None:
    """Store training histograms, snapshots at steps 20 and 40, and losses; end each run.

    The runs are marked succeeded directly, as no worker trains them here.
    """
    engine = make_engine(settings.resolved_database_url)
    artifacts = settings.resolved_artifact_dir
    with session_scope(make_sessionmaker(engine)) as session:
        for index, run_id in enumerate(run_ids):
            trained = SWEEP_STUDY["sweep"][0]["values"][index // 2]  # type: ignore[index]
            save_training_histograms(
                session,
                run_id,
                {"count": COUNT_FEATURE.histogram(counts_of(dict.fromkeys(trained, 50)))},
            )
            grid_path = None
            if grid is not None:
                relative = Path("runs") / str(run_id) / "step_0000040.png"
                (artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
                (artifacts / relative).write_bytes(grid)
                grid_path = relative.as_posix()
            add_snapshot(
                session,
                run_id,
                20,
                {"count": COUNT_FEATURE.histogram(counts_of({1: 100}))},
                {"loss": 3.0},
                None,
            )
            add_snapshot(
                session,
                run_id,
                40,
                {
                    "count": COUNT_FEATURE.histogram(
                        counts_of(GENERATED_AT_40[index], UNRECOGNIZED_AT_40)
                    )
                },
                {"loss": 2.0},
                grid_path,
            )
            add_metrics(session, run_id, 20, {"loss": 3.0, "kl": 1.0})
            add_metrics(session, run_id, 40, {"loss": 2.0, "kl": 0.5})
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=RunStatus.succeeded, step=40, progress=1.0, finished_at=utcnow())
            )
        session.commit()
    engine.dispose()
