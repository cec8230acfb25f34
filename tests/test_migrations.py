"""Schema migrations step by step, with rows written at the older revision, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from biaslab.store.db import make_engine
from biaslab.store.migrate import alembic_config, current_revision
from tests.conftest import empty_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite'}"
        return
    with empty_postgres_database("biaslab_migrations") as url:
        yield url


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            if down:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    finally:
        engine.dispose()


def snapshot_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("snapshots")}
    finally:
        engine.dispose()


def insert_snapshot_at_0001(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO studies (id, name, design, created_at) "
                    "VALUES (1, 'old', '{}', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    'INSERT INTO runs (id, study_id, "index", spec, status, step, progress, '
                    "cancel_requested, created_at) "
                    "VALUES (1, 1, 0, '{}', 'succeeded', 10, 1.0, false, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO snapshots (id, run_id, step, histograms, losses, created_at) "
                    "VALUES (1, 1, 10, '{\"count\": {}}', '{\"loss\": 1.0}', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO events (id, study_id, run_id, kind, snapshot_id, created_at) "
                    "VALUES (1, 1, 1, 'snapshot', 1, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()


def count_events(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def read_snapshot(url: str) -> dict:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT * FROM snapshots WHERE id = 1")).mappings().one()
            return dict(row)
    finally:
        engine.dispose()


def test_0002_adds_scores_and_keeps_rows(empty_url):
    migrate(empty_url, "0001")
    insert_snapshot_at_0001(empty_url)
    assert "scores" not in snapshot_columns(empty_url)

    migrate(empty_url, "0002")

    assert current_revision(empty_url) == "0002"
    assert "scores" in snapshot_columns(empty_url)
    row = read_snapshot(empty_url)
    assert row["scores"] is None, "snapshots stored before 0002 have no scores"
    assert row["step"] == 10
    assert count_events(empty_url) == 1


def test_0002_downgrade_drops_scores(empty_url):
    migrate(empty_url, "0002")
    insert_snapshot_at_0001(empty_url)

    migrate(empty_url, "0001", down=True)

    assert current_revision(empty_url) == "0001"
    assert "scores" not in snapshot_columns(empty_url)
    assert read_snapshot(empty_url)["step"] == 10, "the downgrade keeps the rows"
    assert count_events(empty_url) == 1, "the snapshot's event survives the downgrade"
