"""The analysis, comparison and run-count endpoints on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from biaslab.design import MAX_RUNS_PER_STUDY
from biaslab.settings import Settings
from tests.lab_results import (
    GENERATED_AT_40,
    SWEEP_STUDY,
    UNRECOGNIZED_AT_40,
    lab_settings,
    write_sweep_results,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    with lab_settings(request, tmp_path) as settings:
        yield settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def study(client, settings) -> dict:
    """The sweep study with results at steps 20 and 40 for all six runs."""
    response = client.post("/api/studies", json=SWEEP_STUDY)
    assert response.status_code == 201, response.text
    created = response.json()
    write_sweep_results(settings, created["run_ids"])
    return created


def share_at(index: int, count: int) -> float:
    generated = GENERATED_AT_40[index]
    return generated.get(count, 0) / sum(generated.values())


def test_sweep_study_makes_one_run_per_value(client):
    created = client.post("/api/studies", json=SWEEP_STUDY).json()
    assert [run["index"] for run in created["runs"]] == [0, 1, 2, 3, 4, 5]
    specs = [client.get(f"/api/runs/{run_id}").json() for run_id in created["run_ids"]]
    assert all(spec["status"] == "queued" for spec in specs)


def test_analysis_reports_modes_against_controls(client, study):
    response = client.get(f"/api/studies/{study['id']}/analysis")
    assert response.status_code == 200, response.text
    analysis = response.json()
    assert analysis["pending"] == []
    modes = analysis["modes"]
    assert len(modes) == 1
    entry = modes[0]
    assert entry["runs"] == [0, 1]
    assert entry["controls"] == [{"mode": 2, "runs": [2, 3]}, {"mode": 4, "runs": [4, 5]}]
    observed_at_3 = np.mean([share_at(0, 3), share_at(1, 3)])
    predicted_at_3 = 0.5 * share_at(2, 3) + 0.5 * share_at(4, 3)
    assert entry["observed"][2]["value"] == pytest.approx(observed_at_3)
    assert entry["prediction"][2]["value"] == pytest.approx(predicted_at_3)
    ratio = entry["enhancement_ratio"]
    assert ratio["value"] == pytest.approx(observed_at_3 / predicted_at_3)
    assert ratio["low"] <= ratio["value"] <= ratio["high"]
    assert ratio["seeds"] == 2
    assert analysis["methods"]["intervals"]["method"] == "percentile bootstrap over seeds"


def test_analysis_distances_and_unrecognized_share(client, study):
    analysis = client.get(f"/api/studies/{study['id']}/analysis").json()
    runs = {run["index"]: run for run in analysis["runs"]}
    assert set(runs) == set(range(6))
    control = runs[2]["features"]["count"]
    total = sum(GENERATED_AT_40[2].values()) + UNRECOGNIZED_AT_40
    assert control["unrecognized_share"] == pytest.approx(UNRECOGNIZED_AT_40 / total)
    # Training on {2} alone; generated 10% at 1, 80% at 2, 10% at 3: total variation 0.2.
    assert control["total_variation"] == pytest.approx(0.2)
    assert control["wasserstein_1"] == pytest.approx(0.2)
    assert runs[2]["labels"] == {"dataset": "2", "seed": "0"}
    conditions = analysis["conditions"]
    assert [condition["runs"] for condition in conditions] == [[0, 1], [2, 3], [4, 5]]


def test_analysis_at_earlier_step(client, study):
    analysis = client.get(f"/api/studies/{study['id']}/analysis", params={"step": 30}).json()
    assert analysis["step"] == 30
    assert {run["step"] for run in analysis["runs"]} == {20}
    # At step 20 every run made only 1 dot, so the mixture's observed share at 3 is 0.
    assert analysis["modes"][0]["observed"][2]["value"] == 0
    before = client.get(f"/api/studies/{study['id']}/analysis", params={"step": 10}).json()
    assert before["pending"] == [0, 1, 2, 3, 4, 5]
    assert before["modes"] == []


def test_analysis_of_study_without_results(client):
    created = client.post("/api/studies", json=SWEEP_STUDY).json()
    analysis = client.get(f"/api/studies/{created['id']}/analysis").json()
    assert analysis["pending"] == [0, 1, 2, 3, 4, 5]
    assert analysis["runs"] == []
    assert analysis["modes"] == []


def test_analysis_of_missing_study_is_404(client):
    response = client.get("/api/studies/999/analysis")
    assert response.status_code == 404
    assert response.json() == {"detail": "study 999 not found"}


def test_analysis_figures_draw_intervals(client, study):
    body = client.get(f"/api/studies/{study['id']}/analysis/figures").json()
    assert body["analysis"]["modes"][0]["runs"] == [0, 1]
    [figure] = body["figures"]["modes"]
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["observed", "additive prediction"]
    observed = figure["data"][0]
    assert observed["x"][2] == "3"
    assert observed["y"][2] == pytest.approx(np.mean([share_at(0, 3), share_at(1, 3)]))
    assert observed["error_y"]["array"][2] >= 0
    assert "prototype-enhancement index" in figure["layout"]["title"]["text"]


def test_compare_overlays_runs_grouped_by_axis(client, study):
    response = client.get(f"/api/studies/{study['id']}/compare", params={"group_by": "dataset"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["steps"] == [20, 40]
    assert body["axes"] == [
        {"name": "dataset", "labels": ["2 and 4", "2", "4"]},
        {"name": "seed", "labels": ["0", "1"]},
    ]
    assert [field["path"] for field in body["varying"]] == ["dataset.counts", "training.seed"]
    assert body["varying"][0]["values"]["2"] == [2]
    feature = body["features"][0]
    assert feature["name"] == "count"
    traces = feature["figure"]["data"]
    bars = [trace for trace in traces if trace["type"] == "bar"]
    assert [bar["name"] for bar in bars] == ["dataset 2 and 4", "dataset 2", "dataset 4"]
    # Bars are shares of all images; the mixture group is the mean of runs 0 and 1.
    total = [sum(GENERATED_AT_40[index].values()) + UNRECOGNIZED_AT_40 for index in (0, 1)]
    expected = np.mean([GENERATED_AT_40[0][3] / total[0], GENERATED_AT_40[1][3] / total[1]])
    assert bars[0]["x"][2] == "3"
    assert bars[0]["y"][2] == pytest.approx(expected)
    assert bars[0]["x"][-1] == "unrecognized"
    training = [trace for trace in traces if trace["type"] == "scatter"]
    assert [trace["name"] for trace in training] == [
        "training: dataset 2 and 4",
        "training: dataset 2",
        "training: dataset 4",
    ]
    assert training[1]["y"][1] == pytest.approx(1.0)


def test_compare_each_run_at_step(client, study):
    body = client.get(f"/api/studies/{study['id']}/compare", params={"step": 20}).json()
    assert body["group_by"] == "run"
    assert [run["step"] for run in body["runs"]] == [20] * 6
    bars = [t for t in body["features"][0]["figure"]["data"] if t["type"] == "bar"]
    assert len(bars) == 6
    assert bars[0]["name"] == "run 1 (dataset 2 and 4, seed 0)"
    assert all(bar["y"][0] == pytest.approx(1.0) for bar in bars)
    assert "at step 20" in body["features"][0]["figure"]["layout"]["title"]["text"]


def test_compare_unknown_axis_is_422(client, study):
    response = client.get(f"/api/studies/{study['id']}/compare", params={"group_by": "colour"})
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "group_by"
    assert detail["message"] == (
        "group_by: 'colour' is invalid: Input should be one of 'run', 'dataset', 'seed'"
    )


def test_run_heatmap_over_steps(client, study):
    run_id = study["run_ids"][0]
    body = client.get(f"/api/runs/{run_id}/heatmaps", params={"step": 40}).json()
    assert body["steps"] == [20, 40]
    feature = body["features"][0]
    assert feature["name"] == "count"
    generated, training = feature["figure"]["data"]
    assert generated["x"] == [20, 40]
    rows = generated["y"]
    assert rows[0] == "1" and rows[-1] == "unrecognized"
    # Row "1" at step 20 holds every sample; at step 40 none.
    assert generated["z"][0] == [pytest.approx(1.0), pytest.approx(0.0)]
    assert training["x"] == ["training"]
    shapes = feature["figure"]["layout"]["shapes"]
    assert shapes[0]["x0"] == 40


def test_run_count_of_draft(client):
    draft = {"sweep": SWEEP_STUDY["sweep"]}
    response = client.post("/api/studies/run-count", json=draft)
    assert response.status_code == 200, response.text
    assert response.json() == {"runs": 6, "max_runs": MAX_RUNS_PER_STUDY, "within_limit": True}
    assert client.post("/api/studies/run-count", json={}).json()["runs"] == 1


def test_run_count_above_cap(client):
    seeds = {"name": "seed", "path": "training.seed", "values": list(range(300))}
    counts = {"name": "counts", "path": "dataset.counts", "values": [[1], [2]]}
    body = client.post("/api/studies/run-count", json={"sweep": [seeds, counts]}).json()
    assert body == {"runs": 600, "max_runs": MAX_RUNS_PER_STUDY, "within_limit": False}
    created = client.post("/api/studies", json={**SWEEP_STUDY, "sweep": [seeds, counts]})
    assert created.status_code == 422
    message = created.json()["detail"][0]["message"]
    assert "600 runs" in message
    assert f"{MAX_RUNS_PER_STUDY} runs" in message


def test_run_count_of_malformed_sweep(client):
    response = client.post("/api/studies/run-count", json={"sweep": [{"path": "training.seed"}]})
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "sweep[0].values"
