"""The REST API on real databases: SQLite with the embedded broker, PostgreSQL with Redis."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from backend.app import create_app
from biaslab.analysis.histogram import count_histogram
from biaslab.design import DATASET_FAMILIES, DotsDataset
from biaslab.design.combinations import CombinationsDataset
from biaslab.families.dots import COUNT_FEATURE, DotsFamily
from biaslab.queue import DEFAULT_QUEUE
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.models import Base
from biaslab.store.runs import add_snapshot, save_training_histograms
from tests.examples import EXAMPLE_STUDY


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
        upgrade(settings.resolved_database_url)
        yield settings
        return
    url = request.getfixturevalue("postgres_url")
    broker = request.getfixturevalue("redis_url")
    upgrade(url)
    yield Settings(data_dir=tmp_path, database_url=url, broker_url=broker)
    # The PostgreSQL database lives for the whole session, so each test leaves it empty.
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    redis.Redis.from_url(broker).flushdb()


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def design(**changes: dict) -> dict:
    body = copy.deepcopy(EXAMPLE_STUDY)
    for section, values in changes.items():
        if isinstance(values, dict):
            body[section].update(values)
        else:
            body[section] = values
    return body


def test_create_study_returns_queued_run(client):
    response = client.post("/api/studies", json=EXAMPLE_STUDY)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["id"], int)
    assert len(body["run_ids"]) == 1
    run = body["runs"][0]
    assert run["id"] == body["run_ids"][0]
    assert run["status"] == "queued"
    assert run["steps"] == 3000
    assert run["progress"] == 0.0
    assert body["design"]["dataset"]["counts"] == [2, 4]
    assert body["design"]["name"] == "two and four dots"


def test_create_study_sends_run_to_redis(client, settings):
    if not settings.broker_url:
        pytest.skip("the embedded broker is checked by the worker integration tests")
    client.post("/api/studies", json=EXAMPLE_STUDY)
    queued = redis.Redis.from_url(settings.broker_url).llen(DEFAULT_QUEUE)
    assert queued == 1, "one message per run should wait on the default queue"


def test_list_and_read_studies(client):
    first = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    second = client.post(
        "/api/studies", json=design(name="one dot", dataset={"counts": [1]})
    ).json()

    listing = client.get("/api/studies").json()
    assert listing["count"] == 2
    assert [study["id"] for study in listing["studies"]] == [second["id"], first["id"]]

    study = client.get(f"/api/studies/{first['id']}").json()
    assert study["name"] == "two and four dots"
    assert study["last_event_id"] >= 1, "creating the run recorded an event"
    assert study["created_at"].endswith(("Z", "+00:00")), "times are sent with their UTC offset"
    assert study["runs"][0]["latest_snapshot_step"] is None


def test_missing_study_and_run_are_404(client):
    study = client.get("/api/studies/999")
    assert study.status_code == 404
    assert study.json() == {"detail": "study 999 not found"}
    run = client.get("/api/runs/999")
    assert run.status_code == 404
    assert run.json() == {"detail": "run 999 not found"}


def test_new_run_has_no_results_yet(client):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    assert client.get(f"/api/runs/{run_id}/snapshots").json() == {"snapshots": []}
    metrics = client.get(f"/api/runs/{run_id}/metrics").json()
    assert metrics == {"run_id": run_id, "steps": [], "series": {}}
    figures = client.get(f"/api/runs/{run_id}/figures").json()
    assert figures["step"] is None
    assert figures["features"][0]["name"] == "count"
    for feature in figures["features"]:
        assert feature["figure"]["data"] == [], "no histograms until the worker starts the run"
    missing = client.get(f"/api/runs/{run_id}/figures", params={"step": 250})
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"run {run_id} has no snapshot at step 250"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"dataset": {"counts": [0]}},
            "dataset.counts[0]",
            "dataset.counts[0]: 0 is invalid: Input should be an integer from 1 to 16",
        ),
        (
            {"dataset": {"counts": [2, 100]}},
            "dataset.counts[1]",
            "dataset.counts[1]: 100 is invalid: Input should be an integer from 1 to 16",
        ),
        (
            {"dataset": {"image_size": 7}},
            "dataset.image_size",
            "dataset.image_size: 7 is invalid: Input should be 32 or 64",
        ),
        (
            {"training": {"learning_rate": -0.001}},
            "training.learning_rate",
            "training.learning_rate: -0.001 is invalid: "
            "Input should be a number above 0 and at most 1",
        ),
        (
            {"training": {"steps": 1_000_000_000}},
            "training.steps",
            "training.steps: 1000000000 is invalid: Input should be an integer from 1 to 1000000",
        ),
        (
            {"dataset": {"family": "stars"}},
            "dataset.family",
            "dataset.family: 'stars' is invalid: Input tag 'stars' found using 'family' "
            "does not match any of the expected tags: "
            + ", ".join(repr(family) for family in DATASET_FAMILIES),
        ),
    ],
)
def test_invalid_design_is_422_and_stores_nothing(client, changes, field, message):
    response = client.post("/api/studies", json=design(**changes))
    assert response.status_code == 422
    details = response.json()["detail"]
    assert [detail["field"] for detail in details] == [field]
    assert details[0]["message"] == message
    assert client.get("/api/studies").json()["count"] == 0, "a rejected design must not be stored"


def test_missing_section_named(client):
    body = design()
    del body["training"]
    response = client.post("/api/studies", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["message"] == "training: missing, this field is required"


def test_cancel_queued_run(client):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    response = client.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None

    again = client.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"run {run_id} has already ended as cancelled; only queued or running runs can be cancelled"
    )


def test_preview_is_png_grid(client):
    response = client.post("/api/datasets/preview", json=EXAMPLE_STUDY["dataset"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.width >= 4 * 32, "the preview is a 4x4 grid of 32x32 images"
    assert image.height >= 4 * 32


def test_preview_rejects_invalid_dataset(client):
    response = client.post("/api/datasets/preview", json={**EXAMPLE_STUDY["dataset"], "noise": -1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "noise"


def test_pages_and_plotly_served(client):
    index = client.get("/")
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]
    study_page = client.get("/studies/1")
    assert study_page.status_code == 200
    plotly = client.get("/static/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert len(plotly.content) > 1_000_000, "the full Plotly.js bundle is served locally"


def test_openapi_lists_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/studies",
        "/api/studies/{study_id}",
        "/api/studies/{study_id}/events",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/snapshots",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/features",
        "/api/runs/{run_id}/figures/{feature}",
        "/api/datasets/preview",
        "/api/datasets/histograms",
    ):
        assert path in paths, f"{path} missing from the OpenAPI schema"


@pytest.mark.parametrize(
    ("raw_body", "field"),
    [
        ('{"noise": NaN}', "dataset.noise"),
        ('{"noise": Infinity}', "dataset.noise"),
        ('{"weights": [1e308, 1e308]}', "dataset.weights[0]"),
    ],
)
def test_non_finite_numbers_are_422(client, raw_body, field):
    body = design()
    text_body = json.dumps(body).replace('"noise": 0.03', raw_body[1:-1])
    response = client.post(
        "/api/studies", content=text_body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert field in [detail["field"] for detail in response.json()["detail"]]
    assert client.get("/api/studies").json()["count"] == 0


@pytest.mark.parametrize("name", ["   ", "a\u0000b", "line\nbreak"])
def test_blank_or_control_names_rejected(client, name):
    response = client.post("/api/studies", json=design(name=name))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"


def test_lone_surrogate_name_is_422(client):
    text_body = json.dumps(design()).replace('"two and four dots"', '"\\ud800 x"')
    response = client.post(
        "/api/studies", content=text_body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"


def test_huge_input_not_echoed_whole(client):
    response = client.post("/api/studies", json=design(name="x" * 100_000))
    assert response.status_code == 422
    assert len(response.content) < 5_000, "a rejected value is echoed in shortened form"


@pytest.mark.parametrize(
    "path",
    [
        "/api/studies/9223372036854775808",
        "/api/runs/9223372036854775808",
        "/api/runs/1/figures?step=99999999999999999999",
        "/api/runs/1/snapshots/99999999999999999999/grid.png",
        "/api/studies?offset=99999999999999999999",
        "/api/studies/99999999999999999999/events",
    ],
)
def test_integers_beyond_64_bits_are_422(client, path):
    client.post("/api/studies", json=EXAMPLE_STUDY)
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert "to 9223372036854775807" in response.json()["detail"][0]["message"]


def store_results(settings: Settings, run_id: int) -> None:
    """Write a run's training histograms and a snapshot with scores, as a worker does."""
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        save_training_histograms(
            session, run_id, {"count": COUNT_FEATURE.histogram(np.array([2.0, 4.0, 2.0, 4.0]))}
        )
        add_snapshot(
            session,
            run_id,
            250,
            {"count": COUNT_FEATURE.histogram(np.array([3.0, 3.0, 4.0, np.nan]))},
            {"loss": 1.5},
            None,
            {"precision": 0.75, "recall": float("nan")},
        )
    engine.dispose()


def test_run_features_of_dots(client):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    body = client.get(f"/api/runs/{run_id}/features").json()
    assert body["run_id"] == run_id
    assert body["family"] == "dots"
    design = DotsDataset.model_validate(EXAMPLE_STUDY["dataset"])
    names = [feature.name for feature in DotsFamily().features(design)]
    assert [feature["name"] for feature in body["features"]] == names
    feature = body["features"][0]
    assert feature["name"] == "count"
    assert feature["title"] == "Dot count"
    assert feature["categorical"] is False
    assert feature["labels"][:3] == ["1", "2", "3"]


def test_feature_figure_and_scores(client, settings):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    store_results(settings, run_id)

    figure = client.get(f"/api/runs/{run_id}/figures/count").json()
    assert figure["name"] == "count"
    assert figure["step"] == 250
    training, generated = figure["figure"]["data"]
    assert training["name"] == "training"
    assert generated["name"] == "generated (step 250)"
    assert training["x"][:4] == ["1", "2", "3", "4"]
    assert training["x"][-1] == "unrecognized"
    assert generated["y"][2] == pytest.approx(0.5), "two of four samples have 3 dots"
    assert generated["y"][-1] == pytest.approx(0.25), "one of four samples is unrecognized"
    title = figure["figure"]["layout"]["title"]["text"]
    assert title == "Dot count: 25% of 4 samples unrecognized"

    at_step = client.get(f"/api/runs/{run_id}/figures/count", params={"step": 250}).json()
    assert at_step == figure
    every = client.get(f"/api/runs/{run_id}/figures").json()
    names = [item["name"] for item in client.get(f"/api/runs/{run_id}/features").json()["features"]]
    assert [item["name"] for item in every["features"]] == names
    assert every["features"][0]["figure"] == figure["figure"]
    for other in every["features"][1:]:
        assert other["figure"]["data"] == [], f"{other['name']} has no stored histogram"

    [snapshot] = client.get(f"/api/runs/{run_id}/snapshots").json()["snapshots"]
    assert snapshot["scores"] == {"precision": 0.75, "recall": None}, "NaN is sent as null"
    assert snapshot["histograms"]["count"]["labels"][0] == "1"


def test_unknown_feature_figure_is_404(client):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    names = [item["name"] for item in client.get(f"/api/runs/{run_id}/features").json()["features"]]
    response = client.get(f"/api/runs/{run_id}/figures/size")
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"run {run_id} has no feature 'size'; its features are {', '.join(names)}"
    }
    missing_step = client.get(f"/api/runs/{run_id}/figures/count", params={"step": 5})
    assert missing_step.status_code == 404
    assert missing_step.json() == {"detail": f"run {run_id} has no snapshot at step 5"}


def test_histograms_without_labels_still_render(client, settings):
    run_id = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        # Histograms stored before bins had labels.
        save_training_histograms(session, run_id, {"count": count_histogram(np.array([2, 4]))})
        add_snapshot(session, run_id, 10, {"count": count_histogram(np.array([3, -1]))}, {}, None)
    engine.dispose()

    figure = client.get(f"/api/runs/{run_id}/figures/count").json()["figure"]
    training, generated = figure["data"]
    assert training["x"] == [*[str(count) for count in range(1, 9)], "unrecognized"]
    assert generated["y"][2] == pytest.approx(0.5)
    assert generated["y"][-1] == pytest.approx(0.5)


def test_dataset_histograms_of_design(client):
    response = client.post("/api/datasets/histograms", json=EXAMPLE_STUDY["dataset"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family"] == "dots"
    count = body["features"][0]
    assert count["name"] == "count"
    histogram = count["histogram"]
    assert histogram["total"] == body["n_images"]
    assert histogram["unrecognized"] == 0, "true features of renders are always known"
    assert histogram["counts"][1] + histogram["counts"][3] == body["n_images"], "only 2 and 4"
    assert histogram["counts"][1] == pytest.approx(body["n_images"] / 2, rel=0.1)
    [training] = count["figure"]["data"]
    assert training["name"] == "training"
    same = client.post("/api/datasets/histograms", json=EXAMPLE_STUDY["dataset"]).json()
    assert same == body, "the same design and seed give the same histograms"


def test_dataset_histograms_reject_invalid(client):
    response = client.post(
        "/api/datasets/histograms", json={**EXAMPLE_STUDY["dataset"], "counts": [0]}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "counts[0]"


PIE_STUDY = {
    **EXAMPLE_STUDY,
    "name": "pies",
    "dataset": {"family": "pie", "image_size": 32, "values": [[3, 5, 5, 3], [7, 5, 5, 7]]},
}


def test_pie_preview_and_histograms(client):
    preview = client.post("/api/datasets/preview", json=PIE_STUDY["dataset"])
    assert preview.status_code == 200, preview.text
    assert preview.headers["content-type"] == "image/png"

    body = client.post("/api/datasets/histograms", json=PIE_STUDY["dataset"]).json()
    assert body["family"] == "pie"
    by_name = {feature["name"]: feature for feature in body["features"]}
    assert set(by_name) >= {"size", "x", "y", "red_share", "colours"}
    size = by_name["size"]["histogram"]
    assert size["labels"] == [str(value) for value in range(1, 10)]
    assert size["counts"][2] + size["counts"][6] == body["n_images"], "sizes are 3 and 7 only"
    assert by_name["x"]["histogram"]["counts"][4] == body["n_images"], "x is always 5"


def test_pie_run_lists_pie_features(client):
    run_id = client.post("/api/studies", json=PIE_STUDY).json()["run_ids"][0]
    features = client.get(f"/api/runs/{run_id}/features").json()
    assert features["family"] == "pie"
    names = [feature["name"] for feature in features["features"]]
    assert names[:4] == ["size", "x", "y", "red_share"]
    figures = client.get(f"/api/runs/{run_id}/figures").json()
    assert [item["name"] for item in figures["features"]] == names
    size = client.get(f"/api/runs/{run_id}/figures/size").json()
    assert size["title"].startswith("Size")


COMBINATIONS_DATASET = {
    "family": "combinations",
    "combinations": 4,
    "selection_seed": 3,
    "pin": {"feature": "size", "values": [5]},
}


def test_combinations_histograms_list_cells(client):
    body = client.post("/api/datasets/histograms", json=COMBINATIONS_DATASET).json()
    design = CombinationsDataset.model_validate(COMBINATIONS_DATASET)
    expected = [dict(zip(("size", "x", "y", "red"), cell, strict=True)) for cell in design.cells()]
    assert body["cells"] == expected
    assert all(cell["size"] == 5 for cell in body["cells"]), "every cell has the pinned size"
    cell_feature = next(feature for feature in body["features"] if feature["name"] == "cell")
    labels = [f"{c['size']}/{c['x']}/{c['y']}/{c['red']}" for c in body["cells"]]
    assert cell_feature["histogram"]["labels"][:-1] == labels, "cells follow the cell bins"

    dots = client.post("/api/datasets/histograms", json=EXAMPLE_STUDY["dataset"]).json()
    assert dots["cells"] is None


def test_combinations_run_lists_training_cells(client):
    study = {**copy.deepcopy(EXAMPLE_STUDY), "dataset": COMBINATIONS_DATASET}
    study["sweep"] = [{"path": "dataset.combinations", "values": [4, 6]}]
    created = client.post("/api/studies", json=study)
    assert created.status_code == 201, created.text
    first, second = created.json()["run_ids"]

    small = client.get(f"/api/runs/{first}/features").json()["training_cells"]
    large = client.get(f"/api/runs/{second}/features").json()["training_cells"]
    assert len(small) == 4
    assert len(large) == 6, "each run of a sweep lists its own cells"
    assert all(cell in large for cell in small), "more cells with one seed keep the fewer"

    dots_run = client.post("/api/studies", json=EXAMPLE_STUDY).json()["run_ids"][0]
    assert client.get(f"/api/runs/{dots_run}/features").json()["training_cells"] is None
