"""docker-compose.yml is parsed, not started: no Docker engine runs in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from backend.cli import app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def cli_commands() -> dict:
    return get_command(app).commands  # type: ignore[attr-defined]


def test_services_present(compose):
    services = compose["services"]
    for name in ("api", "worker-gpu0", "postgres", "redis"):
        assert name in services, f"service {name} missing from docker-compose.yml"


def test_redis_append_only(compose):
    command = compose["services"]["redis"]["command"]
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_postgres_has_volume(compose):
    volumes = compose["services"]["postgres"]["volumes"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in volumes)


def test_worker_reserves_gpu(compose):
    devices = compose["services"]["worker-gpu0"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert compose["services"]["worker-gpu0"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_every_biaslab_command_exists(compose):
    """Each `biaslab ...` command in the file names a real subcommand and options."""
    commands = cli_commands()
    checked = 0
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or command[0] != "biaslab":
            continue
        group = commands[command[1]]
        if hasattr(group, "commands"):
            group = group.commands[command[2]]
        options = {option for parameter in group.params for option in parameter.opts}
        options |= {option for parameter in group.params for option in parameter.secondary_opts}
        for word in command[2:]:
            if (
                word.startswith("--")
                and group.context_settings.get("ignore_unknown_options") is not True
            ):
                assert word in options, f"{name}: `{word}` is not an option of biaslab {command[1]}"
        checked += 1
    assert checked >= 3, "the api, migrate and worker services run biaslab commands"


def test_dockerfile_default_command_exists():
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["biaslab", "serve"' in text
    assert "serve" in cli_commands()
