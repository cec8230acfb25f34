"""The templates endpoints: the listing, and a study made from a template's preset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from biaslab.settings import Settings
from biaslab.templates import TEMPLATES
from tests.lab_results import lab_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    with lab_settings(request, tmp_path) as settings:
        yield settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_templates_listed_with_run_counts(client):
    response = client.get("/api/templates")
    assert response.status_code == 200
    body = response.json()
    assert [template["name"] for template in body["templates"]] == list(TEMPLATES)
    two_four = next(t for t in body["templates"] if t["name"] == "counts-2-4")
    assert "prototype enhancement" in two_four["shows"]
    quick = next(preset for preset in two_four["presets"] if preset["name"] == "quick")
    assert quick["models"] == ["vae", "wgan_gp"]
    assert quick["seeds"] == [0, 1, 2]
    # Two models, three count sets ({2, 4}, {2}, {4}) and three seeds.
    assert quick["runs"] == 18
    assert body["max_runs"] >= quick["runs"]


def test_template_quick_study_created(client):
    response = client.post("/api/templates/counts-2-4/studies", json={"preset": "quick"})
    assert response.status_code == 201, response.text
    study = response.json()
    assert len(study["run_ids"]) == 18
    assert study["name"] == "Counts 2 and 4 against 2 and 4 alone (quick)"
    assert [axis["name"] for axis in study["design"]["sweep"]] == ["model", "dataset", "seed"]
    assert all(run["status"] == "queued" for run in study["runs"])
    stored = client.get(f"/api/studies/{study['id']}").json()
    assert [run["index"] for run in stored["runs"]] == list(range(18))

    axes = client.get(f"/api/studies/{study['id']}/compare").json()["axes"]
    assert axes[1] == {"name": "dataset", "labels": ["2 and 4", "2", "4"]}


def test_template_preset_defaults_to_quick(client):
    response = client.post("/api/templates/single-count/studies", json={})
    assert response.status_code == 201, response.text
    assert response.json()["name"].endswith("(quick)")


def test_unknown_template_is_422(client):
    response = client.post("/api/templates/stars/studies", json={"preset": "quick"})
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "name"
    assert detail["message"].startswith("name: 'stars' is invalid: Input should be one of ")
    assert "'counts-2-4'" in detail["message"]
    assert client.get("/api/studies").json()["count"] == 0


def test_unknown_preset_is_422(client):
    response = client.post("/api/templates/counts-2-4/studies", json={"preset": "huge"})
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "preset"
    assert detail["message"] == "preset: 'huge' is invalid: Input should be 'quick' or 'full'"
    assert client.get("/api/studies").json()["count"] == 0
