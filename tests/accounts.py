"""Labs with authentication on, and their users, for the tests of users, tokens and ownership."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Base
from biaslab.store.users import create_user, issue_token

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    name: str
    password: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def lab_settings(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, **changes: object
) -> Iterator[Settings]:
    """Yield settings with authentication on, on an upgraded SQLite or PostgreSQL database.

    The PostgreSQL database is shared by the test session, so it is emptied afterwards.
    """
    values: dict[str, object] = {"data_dir": tmp_path, "auth": "required", **changes}
    if backend == "sqlite":
        settings = Settings(**values)  # type: ignore[arg-type]
        upgrade(settings.resolved_database_url)
        yield settings
        return
    url = request.getfixturevalue("postgres_url")
    upgrade(url)
    yield Settings(database_url=url, **values)  # type: ignore[arg-type]
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def add_account(
    settings: Settings, name: str, *, password: str | None = PASSWORD, admin: bool = False
) -> Account:
    """Create a user with a first API token in the lab's database."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            user = create_user(session, name, password, is_admin=admin)
            token = issue_token(session, user, "test").secret
    finally:
        engine.dispose()
    return Account(name=name, password=password, token=token)
