"""A red-share study stored before the red share had half-value bins, read through the API.

Older versions stored the pie's red-share histograms with one bin per value (1..9); the
feature now has one per half value. Stored histograms carry their own edges and labels,
so the run page, the analysis and the exports must read the old bins as they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.app import create_app
from biaslab.design.pie import PieDataset
from biaslab.families import Feature
from biaslab.families.pie import PieFamily
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.models import Run, RunStatus, utcnow
from biaslab.store.runs import add_snapshot, save_training_histograms
from tests.lab_results import lab_settings

OLD_RED_SHARE = Feature(
    name="red_share",
    title="Red share",
    centres=tuple(float(value) for value in range(1, 10)),
    labels=tuple(str(value) for value in range(1, 10)),
)
OLD_LABELS = [str(value) for value in range(1, 10)]
# The quick red-share template's conditions, in run order, each over seeds 0 and 1.
CONDITIONS = [[3, 4], [3, 9], [3], [4], [9]]
SAMPLES_PER_VALUE = 45
# Samples that every mixture run generates at a red value of 6.
MIXTURE_AT_6 = 10
ZIP = {"content-type": "application/zip"}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Iterator[Settings]:
    with lab_settings(request, tmp_path) as settings:
        yield settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def old_study(client, settings) -> dict:
    """The quick red-share study with every run's red share stored on the old bins."""
    response = client.post("/api/templates/red-share/studies", json={"preset": "quick"})
    assert response.status_code == 201, response.text
    created = response.json()
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        for index, run_id in enumerate(created["run_ids"]):
            reds = np.asarray(CONDITIONS[index // 2], dtype=np.float64)
            generated = np.repeat(reds, SAMPLES_PER_VALUE)
            if reds.size > 1:
                generated = np.concatenate([generated, np.full(MIXTURE_AT_6, 6.0)])
            save_training_histograms(
                session, run_id, {"red_share": OLD_RED_SHARE.histogram(np.repeat(reds, 50))}
            )
            add_snapshot(
                session,
                run_id,
                20,
                {"red_share": OLD_RED_SHARE.histogram(generated)},
                {"loss": 1.0},
                None,
            )
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=RunStatus.succeeded, step=20, progress=1.0, finished_at=utcnow())
            )
        session.commit()
    engine.dispose()
    return created


def test_old_bins_in_study_analysis(client, old_study):
    response = client.get(f"/api/studies/{old_study['id']}/analysis")
    assert response.status_code == 200, response.text
    modes = {tuple(entry["trained"]): entry for entry in response.json()["modes"]}
    close = modes[(3.0, 4.0)]
    assert close["bins"] == OLD_LABELS
    assert close["between"] == [], "the old bins have nothing between 3 and 4"
    assert close["enhancement_ratio"] is None
    assert close["left_out"] == []
    far = modes[(3.0, 9.0)]
    assert far["between"] == ["4", "5", "6", "7", "8"]
    assert far["observed_between"]["value"] == pytest.approx(MIXTURE_AT_6 / 100)
    assert far["predicted_between"]["value"] == 0
    figures = client.get(f"/api/studies/{old_study['id']}/analysis/figures")
    assert figures.status_code == 200, figures.text
    assert len(figures.json()["figures"]["modes"]) == 2


def test_old_bins_on_run_page(client, old_study):
    run_id = old_study["run_ids"][0]
    response = client.get(f"/api/runs/{run_id}/figures/red_share")
    assert response.status_code == 200, response.text
    training, generated = response.json()["figure"]["data"]
    assert training["x"] == [*OLD_LABELS, "unrecognized"]
    assert generated["x"] == [*OLD_LABELS, "unrecognized"]
    assert generated["y"][5] == pytest.approx(MIXTURE_AT_6 / 100)
    figures = client.get(f"/api/runs/{run_id}/figures")
    assert figures.status_code == 200, figures.text
    heatmaps = client.get(f"/api/runs/{run_id}/heatmaps")
    assert heatmaps.status_code == 200, heatmaps.text
    [heatmap] = [item for item in heatmaps.json()["features"] if item["name"] == "red_share"]
    assert heatmap["figure"]["data"][0]["y"] == [*OLD_LABELS, "unrecognized"]


def test_old_bins_in_exports(client, old_study):
    for path in ("export.json", "export.csv"):
        response = client.get(f"/api/studies/{old_study['id']}/{path}")
        assert response.status_code == 200, f"{path}: {response.text}"
    exported = client.get(f"/api/studies/{old_study['id']}/export.json").json()
    histogram = exported["runs"][0]["training_histograms"]["red_share"]
    assert histogram["labels"] == OLD_LABELS
    assert histogram["edges"] == [value + 0.5 for value in range(10)]


def test_old_bins_survive_bundle_import(client, old_study):
    bundle = client.get(f"/api/studies/{old_study['id']}/bundle")
    assert bundle.status_code == 200, bundle.text
    imported = client.post("/api/studies/import", content=bundle.content, headers=ZIP)
    assert imported.status_code == 201, imported.text
    analysis = client.get(f"/api/studies/{imported.json()['id']}/analysis").json()
    modes = {tuple(entry["trained"]): entry for entry in analysis["modes"]}
    assert modes[(3.0, 4.0)]["bins"] == OLD_LABELS
    assert modes[(3.0, 9.0)]["observed_between"]["value"] == pytest.approx(MIXTURE_AT_6 / 100)


def test_old_bins_in_compare_overlay(client, old_study):
    response = client.get(f"/api/studies/{old_study['id']}/compare", params={"group_by": "dataset"})
    assert response.status_code == 200, response.text
    [overlay] = [item for item in response.json()["features"] if item["name"] == "red_share"]
    assert overlay["left_out"] == []
    assert overlay["figure"]["data"][0]["x"] == [*OLD_LABELS, "unrecognized"]


def test_resumed_run_heatmap_keeps_newest_bins(client, settings, old_study):
    # A run resumed after the upgrade: new training histograms and a snapshot on new bins.
    run_id = old_study["run_ids"][-1]
    new_red_share = PieFamily().features(PieDataset())[3]
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        reds = np.full(100, 9.0)
        save_training_histograms(session, run_id, {"red_share": new_red_share.histogram(reds)})
        add_snapshot(
            session, run_id, 40, {"red_share": new_red_share.histogram(reds)}, {"loss": 1.0}, None
        )
        session.commit()
    engine.dispose()
    response = client.get(f"/api/runs/{run_id}/heatmaps")
    assert response.status_code == 200, response.text
    [heatmap] = [item for item in response.json()["features"] if item["name"] == "red_share"]
    generated, training = heatmap["figure"]["data"]
    assert generated["x"] == [40], "the snapshot on the old bins is left out"
    assert generated["y"][-2:] == ["9", "unrecognized"]
    assert len(training["y"]) == 18
    compare = client.get(f"/api/studies/{old_study['id']}/compare").json()
    [overlay] = [item for item in compare["features"] if item["name"] == "red_share"]
    assert overlay["left_out"] == [9]


def test_red_share_figure_shows_whole_scale(client, settings, old_study):
    # A run on red share 0.3 with today's bins still shows the bins up to 9.
    run_id = old_study["run_ids"][4]
    new_red_share = PieFamily().features(PieDataset())[3]
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        reds = np.full(100, 3.0)
        save_training_histograms(session, run_id, {"red_share": new_red_share.histogram(reds)})
        add_snapshot(
            session, run_id, 40, {"red_share": new_red_share.histogram(reds)}, {"loss": 1.0}, None
        )
        session.commit()
    engine.dispose()
    figure = client.get(f"/api/runs/{run_id}/figures/red_share").json()["figure"]
    assert figure["data"][0]["x"] == [*new_red_share.labels, "unrecognized"]
