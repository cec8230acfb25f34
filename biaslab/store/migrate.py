"""Schema migrations of the store, with Alembic configured in code (no alembic.ini).

`upgrade` brings a database to the newest revision. `check_current` raises
when a database's schema is older or newer than the code, so that the API and
the workers stop at start-up instead of failing in the middle of a request.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url

from biaslab.store.db import make_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """Return an Alembic configuration that points at the store's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """Return the newest revision that the migrations define."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str) -> str | None:
    """Return the revision the database at `url` is at; None for an empty database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest revision, creating it if empty."""
    engine = make_engine(url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            # env.py runs the migrations on this connection, inside this transaction.
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    logger.info("database at %s is at revision %s", _display(url), head_revision())


def check_current(url: str) -> None:
    """Raise RuntimeError unless the database at `url` is at the newest revision."""
    expected = head_revision()
    current = current_revision(url)
    if current != expected:
        found = current or "none (no biaslab tables)"
        raise RuntimeError(
            f"database at {_display(url)} is at revision {found}, expected {expected}; "
            "run `biaslab db upgrade`"
        )


def _display(url: str) -> str:
    """Render `url` with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
