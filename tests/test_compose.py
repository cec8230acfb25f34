"""docker-compose.yml is parsed, not started: no Docker engine runs in CI."""

from __future__ import annotations

import re
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


def worker_services(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in compose["services"].items()
        if (service.get("command") or [None, None])[:2] == ["biaslab", "worker"]
    }


def node_name(service: dict) -> str:
    command = service["command"]
    return command[command.index("--hostname") + 1]


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if name == "migrate":  # runs once and exits
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"service {name} has no health check"


def test_one_worker_per_gpu(compose):
    gpu_workers = {
        name: s for name, s in compose["services"].items() if name.startswith("worker-gpu")
    }
    assert len(gpu_workers) >= 2, "the file shows how a second GPU is added"
    for name, service in gpu_workers.items():
        index = name.removeprefix("worker-gpu")
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["device_ids"] == [index], f"{name} reserves GPU {index} alone"
        assert device["capabilities"] == ["gpu"]
        # The container sees its one reserved GPU as CUDA device 0.
        assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
        assert service["environment"]["BIASLAB_DEVICE"] == "cuda"
        assert service["command"][service["command"].index("--queues") + 1] == "gpu"


def test_cpu_worker_takes_cpu_runs(compose):
    service = compose["services"]["worker-cpu"]
    assert service["command"][service["command"].index("--queues") + 1] == "cpu"
    assert service["environment"]["BIASLAB_DEVICE"] == "cpu"
    assert "deploy" not in service, "a CPU worker reserves no GPU"


def test_worker_commands_parse(compose):
    from worker.__main__ import parse_args

    workers = worker_services(compose)
    assert len(workers) >= 3
    for name, service in workers.items():
        args = parse_args(service["command"][2:])
        assert args.queues in (["cpu"], ["gpu"]), f"{name}: {args.queues}"
    names = [node_name(service) for service in workers.values()]
    assert len(set(names)) == len(names), f"each worker has its own node name: {names}"


def test_worker_health_check_pings_its_own_node(compose):
    for name, service in worker_services(compose).items():
        node = node_name(service).replace("%h", "$${HOSTNAME}")
        command = service["healthcheck"]["test"][1]
        assert command.startswith("celery -A worker.app inspect ping"), name
        assert f"-d {node} " in command, f"{name} pings {node}: {command}"


def test_biaslab_settings_in_compose_exist(compose):
    from biaslab.settings import Settings

    known = {f"BIASLAB_{field.upper()}" for field in Settings.model_fields}
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for variable in environment:
            if variable.startswith("BIASLAB_"):
                assert variable in known, f"{name}: {variable} is not a biaslab setting"
    # The values parse, too.
    values = compose["x-biaslab-env"]
    settings = Settings(
        **{key.removeprefix("BIASLAB_").lower(): value for key, value in values.items()}
    )
    assert settings.max_runs_per_user == 4


def test_api_is_reached_through_the_proxy(compose):
    api = compose["services"]["api"]
    proxy = compose["services"]["proxy"]
    assert "ports" not in api, "only the proxy publishes a port"
    assert proxy["ports"]
    assert api["environment"]["FORWARDED_ALLOW_IPS"] == "*", "uvicorn trusts the proxy's headers"
    mounted = {volume.split(":")[0] for volume in proxy["volumes"]}
    assert "./deploy/nginx.conf" in mounted


def nginx_locations(text: str) -> dict[str, str]:
    """Map each `location` of an nginx server block to the text of its body."""
    return {
        match.group(1).strip(): match.group(2)
        for match in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", text)
    }


def test_proxy_streams_events_unbuffered_and_uncompressed():
    from backend.app import create_app

    text = (ROOT / "deploy" / "nginx.conf").read_text()
    locations = nginx_locations(text)
    stream = next(body for where, body in locations.items() if where.startswith("~"))
    pattern = next(where for where in locations if where.startswith("~")).removeprefix("~").strip()
    assert re.fullmatch(pattern, "/api/studies/12/events"), "the location matches the stream"
    assert not re.fullmatch(pattern, "/api/studies/12"), "and nothing else"
    for directive in ("proxy_buffering off;", "gzip off;", "proxy_cache off;"):
        assert directive in stream, f"the event stream's location lacks `{directive}`"
    assert re.search(r"proxy_read_timeout\s+\d+[hm];", stream), "a long read timeout"
    # Keep-alive connections to the API need HTTP/1.1 and an empty Connection header.
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    paths = create_app().openapi()["paths"]
    assert "/api/studies/{study_id}/events" in paths, "the stream's path is the API's"


def test_event_stream_asks_proxies_not_to_buffer():
    source = (ROOT / "backend" / "routes" / "events.py").read_text()
    assert '"X-Accel-Buffering": "no"' in source
