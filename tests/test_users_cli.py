"""The `biaslab users` commands, on the embedded SQLite database and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend.app import create_app
from backend.cli import app
from biaslab.auth import API_TOKEN_PREFIX
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.users import list_users
from tests.accounts import PASSWORD, lab_settings
from tests.conftest import empty_postgres_database

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, monkeypatch) -> Iterator[Settings]:
    """Settings of the lab that the commands work on, with authentication on."""
    # The CLI writes BIASLAB_DATA_DIR into the environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("BIASLAB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BIASLAB_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path, auth="required")
        return
    with lab_settings(request, tmp_path, "postgresql") as postgres_settings:
        assert postgres_settings.database_url is not None
        monkeypatch.setenv("BIASLAB_DATABASE_URL", postgres_settings.database_url)
        yield postgres_settings


def users(settings: Settings, *arguments: str, stdin: str | None = None):
    return runner.invoke(
        app, ["users", *arguments, "--data-dir", str(settings.data_dir)], input=stdin
    )


def create(settings: Settings, name: str, *options: str) -> str:
    """Create a user with the password on stdin and return the token on the output's last line."""
    result = users(settings, "create", name, "--password-stdin", *options, stdin=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_create_prints_working_token(settings):
    result = users(
        settings, "create", "alice", "--admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "created admin 'alice' (signs in with: password or API token)"
    token = lines[-1]
    assert token.startswith(API_TOKEN_PREFIX)

    with TestClient(create_app(settings)) as client:
        assert client.get("/api/studies", headers=bearer(token)).status_code == 200
        signed_in = client.post("/api/session", json={"name": "alice", "password": PASSWORD})
        assert signed_in.status_code == 200
        assert signed_in.json()["user"]["is_admin"] is True


def test_create_asks_for_password(settings):
    result = users(settings, "create", "bob", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    with TestClient(create_app(settings)) as client:
        signed_in = client.post("/api/session", json={"name": "bob", "password": PASSWORD})
        assert signed_in.status_code == 200
        assert signed_in.json()["user"]["is_admin"] is False


def test_create_without_terminal_or_password(settings):
    result = users(settings, "create", "erin", stdin="")
    assert result.exit_code == 2, result.output
    assert result.output.strip().endswith(
        "error: no password given: run in a terminal, or pass --password-stdin or --no-password"
    ), result.output
    assert users(settings, "list").output.startswith("no users yet")


def test_create_without_password(settings):
    result = users(settings, "create", "robot", "--no-password")
    assert result.exit_code == 0, result.output
    assert "signs in with: API tokens only" in result.output
    token = result.output.strip().splitlines()[-1]
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/studies", headers=bearer(token)).status_code == 200
        rejected = client.post("/api/session", json={"name": "robot", "password": PASSWORD})
        assert rejected.status_code == 401


@pytest.mark.parametrize(
    ("arguments", "stdin", "message"),
    [
        (["Alice", "--no-password"], None, "user name 'Alice' is invalid: use 1 to 64 lowercase"),
        (["carol", "--password-stdin"], "short\n", "password is too short (5 characters)"),
        (["dave", "--password-stdin", "--no-password"], None, "exclude each other"),
    ],
)
def test_create_rejects_bad_input(settings, arguments, stdin, message):
    result = users(settings, "create", *arguments, stdin=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert users(settings, "list").output.startswith("no users yet")


def test_create_existing_user_fails(settings):
    create(settings, "alice")
    result = users(settings, "create", "alice", "--no-password")
    assert result.exit_code == 2
    assert "user 'alice' already exists" in result.output


def test_list_shows_users(settings):
    create(settings, "alice", "--admin")
    users(settings, "create", "robot", "--no-password")
    result = users(settings, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split() == [
        "name",
        "role",
        "state",
        "password",
        "tokens",
        "token",
        "last",
        "used",
        "(UTC)",
    ]
    assert lines[1].split() == ["alice", "admin", "enabled", "yes", "1", "never"]
    assert lines[2].split() == ["robot", "user", "enabled", "no", "1", "never"]


def test_token_adds_a_token(settings):
    first = create(settings, "alice")
    result = users(settings, "token", "alice", "--token-name", "cluster job")
    assert result.exit_code == 0, result.output
    assert "API token 'cluster job' for 'alice', shown only now:" in result.output
    second = result.output.strip().splitlines()[-1]
    assert second.startswith(API_TOKEN_PREFIX)
    assert second != first
    with TestClient(create_app(settings)) as client:
        for token in (first, second):
            assert client.get("/api/studies", headers=bearer(token)).status_code == 200
        names = [
            token["name"]
            for token in client.get("/api/tokens", headers=bearer(first)).json()["tokens"]
        ]
        assert names == ["cluster job", "first token"]


def test_token_for_unknown_user_fails(settings):
    result = users(settings, "token", "nobody")
    assert result.exit_code == 2
    assert "user 'nobody' not found" in result.output


def test_disable_stops_tokens(settings):
    token = create(settings, "alice")
    result = users(settings, "disable", "alice")
    assert result.exit_code == 0, result.output
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/studies", headers=bearer(token)).status_code == 401
    assert users(settings, "list").output.strip().splitlines()[1].split()[2] == "disabled"
    again = users(settings, "token", "alice")
    assert again.exit_code == 2
    assert "user 'alice' is disabled" in again.output


def test_database_not_upgraded_fails(tmp_path, monkeypatch):
    with empty_postgres_database("biaslab_users_cli") as url:
        monkeypatch.setenv("BIASLAB_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("BIASLAB_DATABASE_URL", url)
        result = runner.invoke(app, ["users", "list"])
    assert result.exit_code == 2
    assert "run `biaslab db upgrade`" in result.output


def test_command_line_prints_token_last(tmp_path):
    """The installed entry point, as an admin runs it: the token is the last line of stdout."""
    environment = {**os.environ, "BIASLAB_DATA_DIR": str(tmp_path)}
    environment.pop("BIASLAB_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "users", "create", "alice", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith(API_TOKEN_PREFIX)
    engine = make_engine(Settings(data_dir=Path(tmp_path)).resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        assert [user.name for user in list_users(session)] == ["alice"]
    engine.dispose()
