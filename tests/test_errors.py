"""422 items: they name the field to fix and its value, and for a type error what it allows."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from biaslab.settings import Settings
from biaslab.store.migrate import upgrade
from tests.examples import EXAMPLE_STUDY

# (dataset, field, value shown in the message, start of the rule)
CROSS_FIELD_CASES = [
    (
        {"family": "dots", "counts": [2], "colour_mode": "one"},
        "colours",
        "None",
        "colours has 0 entries with colour_mode one, which takes one colour",
    ),
    (
        {"family": "dots", "counts": [2], "radius_mode": "range"},
        "radius_range",
        "None",
        "radius_range is None with radius_mode range",
    ),
    (
        {"family": "dots", "counts": [2], "reference_count": 2},
        "reference_count",
        "2",
        "reference_count 2 is set with radius_mode fixed",
    ),
    (
        {"family": "dots", "counts": [2, 16], "dot_radius": 0.15},
        "counts",
        "[2, 16]",
        "counts [16] do not fit with dot_radius 0.15",
    ),
    (
        {
            "family": "dots",
            "counts": [2],
            "colour_mode": "one",
            "colours": ["#000000"],
            "min_spacing": 0.2,
        },
        "min_spacing",
        "0.2",
        "min_spacing 0.2 is too small for colour_mode one",
    ),
    (
        {
            "family": "dots",
            "counts": [2],
            "image_size": 32,
            "dot_radius": 0.07,
            "radius_mode": "constant_area",
            "reference_count": 1,
        },
        "dot_radius",
        "0.07",
        "the dot radius with constant_area at 2 dots",
    ),
    (
        {
            "family": "shapes",
            "shapes": ["circle"],
            "colours": ["red"],
            "held_out": [{"shapes": ["circle", "circle"], "colours": ["red", "red"]}],
        },
        "held_out",
        "[{'shapes': ['circle', 'circle'], 'colours': ['red', 'red']}]",
        "held_out and restricted hold out every combination",
    ),
    (
        {
            "family": "shapes",
            "shapes": ["circle"],
            "colours": ["red"],
            "restricted": [{"shapes": ["circle", "circle"], "colours": [["red", "red"]]}],
        },
        None,  # restricted allows its only pair, so the design is valid
        None,
        None,
    ),
    (
        {"family": "combinations", "combinations": 500, "pin": {"feature": "size", "values": [1]}},
        "combinations",
        "500",
        "only 405 cells have size in [1]",
    ),
]


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def study_with(dataset: dict) -> dict:
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["dataset"] = dataset
    return body


@pytest.mark.parametrize(("dataset", "field", "shown", "rule"), CROSS_FIELD_CASES)
def test_study_error_names_field(client, dataset, field, shown, rule):
    response = client.post("/api/studies", json=study_with(dataset))
    if field is None:
        assert response.status_code == 201, response.text
        return

    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == f"dataset.{field}"
    assert item["loc"] == ["body", "dataset", dataset["family"], *field.split(".")]
    assert item["message"].startswith(f"dataset.{field}: {shown} is invalid: {rule}"), item
    assert item["input"] == dataset.get(field), "the input is the field's value, not the dataset"
    assert "'family'" not in item["message"], "the message dumps the whole dataset"


@pytest.mark.parametrize(("dataset", "field", "shown", "rule"), CROSS_FIELD_CASES)
@pytest.mark.parametrize("endpoint", ["preview", "histograms"])
def test_dataset_error_names_field(client, dataset, field, shown, rule, endpoint):
    response = client.post(f"/api/datasets/{endpoint}", json=dataset)
    if field is None:
        assert response.status_code == 200, response.text
        return

    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == field
    assert item["message"].startswith(f"{field}: {shown} is invalid: {rule}"), item


def test_sweep_error_names_field(client):
    body = study_with({"family": "dots", "counts": [2]})
    body["sweep"] = [{"path": "dataset.colour_mode", "values": ["random", "one"]}]
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == "sweep"
    assert (
        'axis value dataset.colour_mode = "one" makes run 1 invalid: dataset.colours: null is '
        "invalid: colours has 0 entries with colour_mode one"
    ) in item["message"], item["message"]


def test_invalid_json_body_message(client):
    response = client.post(
        "/api/datasets/preview",
        content=b'{"family": "dots", "counts": [2]',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["field"] == "body"
    assert item["message"] == "body: invalid JSON at character 32: Expecting ',' delimiter"
    assert item["loc"] == ["body", 32], "loc keeps FastAPI's offset"
    assert item["input"] is None


# (section, field, value sent, the message in full)
TYPE_ERROR_CASES = [
    (
        "training",
        "steps",
        "abc",
        "training.steps: 'abc' is invalid: Input should be an integer from 1 to 1000000",
    ),
    (
        "training",
        "seed",
        1.5,
        "training.seed: 1.5 is invalid: Input should be an integer from 0 to 2147483647",
    ),
    (
        "dataset",
        "noise",
        "low",
        "dataset.noise: 'low' is invalid: Input should be a number from 0 to 0.3",
    ),
    (
        "dataset",
        "counts",
        "2, 4",
        "dataset.counts: '2, 4' is invalid: Input should be a list of 1 to 16 items",
    ),
    (
        "training",
        "learning_rate",
        None,
        "training.learning_rate: no value (null), this field is required, "
        "use a number above 0 and at most 1",
    ),
    (
        "training",
        "device",
        None,
        "training.device: no value (null), this field is required, use 'cpu' or 'gpu'",
    ),
]


@pytest.mark.parametrize(("section", "field", "value", "message"), TYPE_ERROR_CASES)
def test_type_error_states_allowed(client, section, field, value, message):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body[section][field] = value
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == f"{section}.{field}"
    assert item["message"] == message
    assert item["input"] == value


def test_null_number_states_range(client):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["model"] = {"kind": "ddpm", "ema_decay": None}
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["message"] == (
        "model.ema_decay: no value (null), this field is required, "
        "use a number at least 0 and below 1"
    )
    assert "None" not in item["message"]


def test_type_error_of_nullable_field(client):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["model"] = {"kind": "ddpm", "sampling_steps": "many"}
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["message"] == (
        "model.sampling_steps: 'many' is invalid: Input should be an integer from 1 to 4000, "
        "or null"
    )


def test_dataset_type_error_states_range(client):
    response = client.post(
        "/api/datasets/preview", json={"family": "dots", "counts": [2, "x"], "noise": None}
    )
    assert response.status_code == 422, response.text
    messages = [item["message"] for item in response.json()["detail"]]
    assert messages == [
        "counts[1]: 'x' is invalid: Input should be an integer from 1 to 16",
        "noise: no value (null), this field is required, use a number from 0 to 0.3",
    ]


def test_query_type_error_states_range(client):
    response = client.get("/api/studies", params={"limit": "all"})
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["message"] == "limit: 'all' is invalid: Input should be an integer from 1 to 500"


def test_missing_number_states_range(client):
    body = copy.deepcopy(EXAMPLE_STUDY)
    del body["name"]
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["message"] == (
        "name: missing, this field is required, use a string of 1 to 200 characters"
    )


def test_range_error_states_whole_range(client):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["training"]["batch_size"] = 0
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["message"] == (
        "training.batch_size: 0 is invalid: Input should be an integer from 1 to 1024"
    )


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        (
            "training",
            "steps",
            True,
            "training.steps: true is invalid: Input should be an integer from 1 to 1000000",
        ),
        (
            "dataset",
            "noise",
            False,
            "dataset.noise: false is invalid: Input should be a number from 0 to 0.3",
        ),
    ],
)
def test_boolean_for_number_rejected(client, section, field, value, message):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body[section][field] = value
    before = client.get("/api/studies").json()
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == f"{section}.{field}"
    assert item["message"] == message
    assert client.get("/api/studies").json() == before, "a rejected study was stored"


def test_min_snr_gamma_range_error(client):
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["model"] = {"kind": "ddpm", "min_snr_gamma": 0}
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["field"] == "model.min_snr_gamma"
    assert item["input"] == 0
    assert "above 0 and at most 1000" in item["message"], item["message"]
