"""The designer's API: the design schema, parameter counts per architecture and presets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from biaslab.design import ARCHITECTURES, DATASET_FAMILIES, MODEL_KINDS, StudyCreate
from biaslab.models import parameter_count
from biaslab.presets import PRESETS
from biaslab.settings import Settings
from biaslab.store.migrate import upgrade
from tests.examples import EXAMPLE_STUDY


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _messages(response) -> list[str]:
    return [item["message"] for item in response.json()["detail"]]


# ---- GET /api/design/schema ----


def test_schema_is_study_create_schema(client):
    response = client.get("/api/design/schema")
    assert response.status_code == 200, response.text
    assert response.json() == StudyCreate.model_json_schema()


def test_schema_lists_every_family_and_kind(client):
    schema = client.get("/api/design/schema").json()
    families = schema["properties"]["dataset"]["discriminator"]["mapping"]
    kinds = schema["properties"]["model"]["discriminator"]["mapping"]
    assert sorted(families) == sorted(DATASET_FAMILIES)
    assert sorted(kinds) == sorted(MODEL_KINDS)


def test_schema_carries_ranges_and_help(client):
    schema = client.get("/api/design/schema").json()
    dots = schema["$defs"]["DotsDataset"]["properties"]
    assert dots["counts"]["items"] == {"maximum": 16, "minimum": 1, "type": "integer"}
    assert dots["noise"]["maximum"] == 0.3
    assert dots["noise"]["description"]
    steps = schema["$defs"]["Training"]["properties"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["default"]) == (1, 1_000_000, 3000)


# ---- POST /api/models/parameters ----


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("image_size", [32, 64])
def test_parameters_of_every_architecture(client, kind, image_size):
    response = client.post(
        "/api/models/parameters", json={"model": {"kind": kind}, "image_size": image_size}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == kind
    assert body["image_size"] == image_size
    assert list(body["parameters"]) == list(ARCHITECTURES)
    model = StudyCreate.model_validate({**EXAMPLE_STUDY, "model": {"kind": kind}}).model
    for architecture, count in body["parameters"].items():
        expected = parameter_count(
            model.model_copy(update={"architecture": architecture}), image_size
        )
        assert count == expected, architecture
    counts = body["parameters"]
    assert 0 < counts["conv_small"] < counts["conv"] < counts["conv_large"]


def test_parameters_follow_model_fields(client):
    small = client.post(
        "/api/models/parameters", json={"model": {"kind": "vae", "z_dim": 8}, "image_size": 32}
    )
    large = client.post(
        "/api/models/parameters", json={"model": {"kind": "vae", "z_dim": 256}, "image_size": 32}
    )
    assert small.status_code == large.status_code == 200
    for architecture in ARCHITECTURES:
        assert small.json()["parameters"][architecture] < large.json()["parameters"][architecture]


def test_parameters_image_size_defaults_to_32(client):
    response = client.post("/api/models/parameters", json={"model": {"kind": "vae"}})
    assert response.status_code == 200, response.text
    assert response.json()["image_size"] == 32


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": {"kind": "vae", "z_dim": 1}, "image_size": 32}, "model.z_dim"),
        ({"model": {"kind": "vae", "architecture": "rnn"}}, "model.architecture"),
        ({"model": {"kind": "flow"}, "image_size": 32}, "model.kind"),
        ({"model": {"kind": "vae"}, "image_size": 48}, "image_size"),
        ({"image_size": 32}, "model"),
        ({"model": {"kind": "vae"}, "colour": "red"}, "colour"),
    ],
)
def test_parameters_reject_invalid_design(client, body, field):
    response = client.post("/api/models/parameters", json=body)
    assert response.status_code == 422, response.text
    fields = [item["field"] for item in response.json()["detail"]]
    assert field in fields
    assert any(message.startswith(f"{field}:") for message in _messages(response))


# ---- GET /api/presets ----


def test_presets_list_every_preset(client):
    response = client.get("/api/presets")
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body) == sorted(PRESETS)
    for kind, presets in PRESETS.items():
        assert sorted(body[kind]) == sorted(presets)
        for name, preset in presets.items():
            listed = body[kind][name]
            assert listed["description"] == preset.description
            assert listed["model"] == preset.model.model_dump(mode="json")
            assert listed["training"] == preset.training.model_dump(mode="json")


def test_presets_make_valid_studies(client):
    for kind, presets in client.get("/api/presets").json().items():
        for name, preset in presets.items():
            assert preset["model"]["kind"] == kind
            body = {**EXAMPLE_STUDY, "name": f"{kind} {name}", **preset}
            del body["description"]
            response = client.post("/api/studies", json=body)
            assert response.status_code == 201, f"{kind}/{name}: {response.text}"
