"""Shared fixtures: a fresh PostgreSQL database per session, Redis, and service checks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

POSTGRES_SERVER_URL = os.environ.get(
    "BIASLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BIASLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
# Set to 1 on a machine without PostgreSQL and Redis: the tests that need them are skipped.
NO_SERVICES = os.environ.get("BIASLAB_TEST_NO_SERVICES") == "1"


def _require_services() -> None:
    if NO_SERVICES:
        pytest.skip("BIASLAB_TEST_NO_SERVICES=1: PostgreSQL and Redis tests are skipped")


@contextmanager
def empty_postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty database on the local PostgreSQL server, yield its URL, then drop it."""
    _require_services()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # No pool: a fault test may restart PostgreSQL while the database exists, and a
    # pooled connection from before the restart would fail the DROP at the end.
    admin = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {POSTGRES_SERVER_URL} is not reachable ({error.orig}); start it, "
            "or set BIASLAB_TEST_NO_SERVICES=1 to skip the tests that need it"
        )
    try:
        yield POSTGRES_SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An empty database shared by the tests of one session."""
    with empty_postgres_database("biaslab_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis, on a database number of its own, emptied first."""
    _require_services()
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(
            f"Redis at {REDIS_URL} is not reachable ({error}); start it, "
            "or set BIASLAB_TEST_NO_SERVICES=1 to skip the tests that need it"
        )
    finally:
        client.close()
    return REDIS_URL
