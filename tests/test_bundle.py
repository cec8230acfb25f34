"""Study bundles: export and import on SQLite and PostgreSQL, by REST and CLI; bad bundles."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from backend.app import create_app
from backend.cli import app as cli_app
from biaslab.bundle import MAX_BUNDLE_BYTES, InvalidBundle, read_bundle
from biaslab.settings import Settings
from tests.lab_results import SWEEP_STUDY, lab_settings, write_sweep_results

ZIP = {"Content-Type": "application/zip"}


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


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
    created = client.post("/api/studies", json=SWEEP_STUDY).json()
    write_sweep_results(settings, created["run_ids"], grid=png_bytes())
    return client.get(f"/api/studies/{created['id']}").json()


@pytest.fixture
def bundle(client, study) -> bytes:
    response = client.get(f"/api/studies/{study['id']}/bundle")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "study-" in response.headers["content-disposition"]
    return response.content


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rebuild(data: bytes, change: Callable[[dict[str, bytes]], None], sign: bool = True) -> bytes:
    """Return the bundle with `change` applied to its members and, with `sign`, a new manifest."""
    members = members_of(data)
    change(members)
    if sign:
        manifest = json.loads(members["manifest.json"])
        manifest["files"] = {
            name: hashlib.sha256(content).hexdigest()
            for name, content in members.items()
            if name != "manifest.json"
        }
        members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def snapshots_of(client: TestClient, run_id: int) -> list[dict]:
    snapshots = client.get(f"/api/runs/{run_id}/snapshots").json()["snapshots"]
    return [
        {key: snapshot[key] for key in ("step", "histograms", "scores", "losses")}
        for snapshot in snapshots
    ]


def test_bundle_members(bundle, study):
    members = members_of(bundle)
    assert {"manifest.json", "design.json", "results.json", "results.csv", "analysis.json"} <= set(
        members
    )
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "biaslab-study-bundle"
    assert manifest["study_id"] == study["id"]
    assert {"python", "numpy", "pydantic", "biaslab"} <= set(manifest["package_versions"])
    assert json.loads(members["design.json"]) == study["design"]
    assert json.loads(members["analysis.json"])["modes"][0]["runs"] == [0, 1]
    figures = [name for name in members if name.startswith("figures/")]
    assert "figures/overlay-count-by-dataset.json" in figures
    assert "figures/modes-1.json" in figures
    figure = json.loads(members["figures/modes-1.json"])
    assert [trace["name"] for trace in figure["data"]] == ["observed", "additive prediction"]
    grids = sorted(name for name in members if name.startswith("grids/"))
    assert grids == [f"grids/run-{index}-step-40.png" for index in range(6)]
    assert not any(name.endswith(".png") and name.startswith("figures/") for name in members)


def test_export_then_import_round_trip(client, study, bundle):
    response = client.post("/api/studies/import", content=bundle, headers=ZIP)
    assert response.status_code == 201, response.text
    imported = response.json()
    assert imported["id"] != study["id"]
    assert imported["name"] == study["name"]
    assert imported["design"] == study["design"]
    assert imported["imported_from"]["study_id"] == study["id"]
    assert "numpy" in imported["imported_from"]["package_versions"]

    assert [run["index"] for run in imported["runs"]] == [run["index"] for run in study["runs"]]
    for original, copy in zip(study["runs"], imported["runs"], strict=True):
        assert copy["status"] == original["status"]
        assert copy["training_histograms"] == original["training_histograms"]
        assert snapshots_of(client, copy["id"]) == snapshots_of(client, original["id"])
        metrics = client.get(f"/api/runs/{copy['id']}/metrics").json()
        assert (
            metrics["series"] == client.get(f"/api/runs/{original['id']}/metrics").json()["series"]
        )
    # The sample grid of each run's last snapshot comes along and is served again.
    last = client.get(f"/api/runs/{imported['runs'][0]['id']}/snapshots").json()["snapshots"][-1]
    assert last["grid_url"] is not None
    assert client.get(last["grid_url"]).content == png_bytes()

    original_analysis = client.get(f"/api/studies/{study['id']}/analysis").json()
    imported_analysis = client.get(f"/api/studies/{imported['id']}/analysis").json()
    for section in ("runs", "conditions", "modes", "numerosity"):
        assert imported_analysis[section] == original_analysis[section], section


def test_imported_design_reruns_same_specs(client, study, bundle):
    imported = client.post("/api/studies/import", content=bundle, headers=ZIP).json()
    design = json.loads(members_of(bundle)["design.json"])
    rerun = client.post("/api/studies", json=design)
    assert rerun.status_code == 201, rerun.text
    for copy, fresh in zip(imported["runs"], rerun.json()["runs"], strict=True):
        copy_spec = client.get(f"/api/studies/{imported['id']}").json()["design"]
        assert copy_spec == design
        assert fresh["steps"] == copy["steps"]
    results = json.loads(members_of(bundle)["results.json"])
    assert [run["spec"]["training"]["seed"] for run in results["runs"]] == [0, 1, 0, 1, 0, 1]


def test_running_run_imported_as_cancelled(client, settings):
    created = client.post("/api/studies", json=SWEEP_STUDY).json()
    bundle = client.get(f"/api/studies/{created['id']}/bundle").content
    imported = client.post("/api/studies/import", content=bundle, headers=ZIP).json()
    assert {run["status"] for run in imported["runs"]} == {"cancelled"}
    assert imported["runs"][0]["error"] == "imported while queued at step 0; it did not end"


def test_export_csv_rows(client, study):
    response = client.get(f"/api/studies/{study['id']}/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "run_index",
        "run_status",
        "axis:dataset",
        "axis:seed",
        "source",
        "step",
        "feature",
        "bin",
        "bin_low",
        "bin_high",
        "count",
        "share",
        "total",
    ]
    generated = [
        row
        for row in rows
        if row["run_index"] == "0"
        and row["source"] == "generated"
        and row["step"] == "40"
        and row["feature"] == "count"
    ]
    by_bin = {row["bin"]: row for row in generated}
    assert by_bin["3"]["count"] == "60"
    assert float(by_bin["3"]["share"]) == pytest.approx(60 / 120)
    assert by_bin["unrecognized"]["count"] == "20"
    assert sum(float(row["share"]) for row in generated) == pytest.approx(1.0)
    assert by_bin["3"]["axis:dataset"] == "2 and 4"


def test_export_json_has_every_run(client, study):
    response = client.get(f"/api/studies/{study['id']}/export.json")
    assert response.status_code == 200
    body = response.json()
    assert body["study"]["id"] == study["id"]
    assert [len(run["snapshots"]) for run in body["runs"]] == [2] * 6
    assert body["runs"][0]["metrics"][0] == {"step": 20, "name": "kl", "value": 1.0}


def test_cli_export_then_import(settings, study, tmp_path):
    runner = CliRunner()
    env = {"BIASLAB_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["BIASLAB_DATABASE_URL"] = settings.database_url
    out = tmp_path / "bundle.zip"
    exported = runner.invoke(cli_app, ["export", str(study["id"]), str(out)], env=env)
    assert exported.exit_code == 0, exported.output
    assert f"exported study {study['id']} (6 runs)" in exported.output
    imported = runner.invoke(cli_app, ["import", str(out)], env=env)
    assert imported.exit_code == 0, imported.output
    assert f"imported study {study['id']} {study['name']!r} as study" in imported.output

    missing = runner.invoke(cli_app, ["export", "999", str(tmp_path / "x.zip")], env=env)
    assert missing.exit_code == 2
    assert "study 999 not found" in missing.output
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    bad = runner.invoke(cli_app, ["import", str(tmp_path / "bad.zip")], env=env)
    assert bad.exit_code == 2
    assert "the file is not a zip archive" in bad.output


def reject(client: TestClient, data: bytes) -> str:
    response = client.post("/api/studies/import", content=data, headers=ZIP)
    assert response.status_code == 422, response.text
    assert client.get("/api/studies").json()["count"] == 1, "a rejected bundle stores nothing"
    detail: str = response.json()["detail"]
    return detail


def test_bundle_not_a_zip_rejected(client, study):
    assert reject(client, b"hello") == (
        "bundle: the file is not a zip archive; export a bundle with `biaslab export`"
    )


def test_bundle_with_unknown_member_rejected(client, study, bundle):
    data = rebuild(bundle, lambda members: members.update({"notes/evil.sh": b"rm -rf /"}))
    message = reject(client, data)
    assert message.startswith("bundle: member 'notes/evil.sh' is not allowed in a bundle")


def test_bundle_with_path_traversal_rejected(client, study, bundle):
    data = rebuild(bundle, lambda members: members.update({"../figures/x.json": b"{}"}))
    assert "contains '..'" in reject(client, data)


def test_bundle_with_tampered_member_rejected(client, study, bundle):
    def tamper(members: dict[str, bytes]) -> None:
        members["results.csv"] += b"0,succeeded\n"

    message = reject(client, rebuild(bundle, tamper, sign=False))
    assert message == "bundle: member 'results.csv' does not match its SHA-256 in manifest.json"


def test_bundle_with_inconsistent_histogram_rejected(client, study, bundle):
    def inflate(members: dict[str, bytes]) -> None:
        results = json.loads(members["results.json"])
        results["runs"][0]["snapshots"][0]["histograms"]["count"]["total"] += 1
        members["results.json"] = json.dumps(results).encode()

    message = reject(client, rebuild(bundle, inflate))
    assert message.startswith("bundle: results.json: runs.0.snapshots.0.histograms.count: ")
    assert "do not add up to total" in message


def test_bundle_with_runs_off_design_rejected(client, study, bundle):
    def reseed(members: dict[str, bytes]) -> None:
        results = json.loads(members["results.json"])
        results["runs"][1]["spec"]["training"]["seed"] = 7
        members["results.json"] = json.dumps(results).encode()

    message = reject(client, rebuild(bundle, reseed))
    assert message == (
        "bundle: results.json: runs.1.spec differs from run 1 of the design; "
        "each run's spec must be the design's expansion"
    )


def test_bundle_with_invalid_design_rejected(client, study, bundle):
    def break_design(members: dict[str, bytes]) -> None:
        for name in ("design.json", "results.json"):
            document = json.loads(members[name])
            design = document if name == "design.json" else document["study"]["design"]
            design["dataset"]["counts"] = [0]
            members[name] = json.dumps(document).encode()

    message = reject(client, rebuild(bundle, break_design))
    assert message.startswith("bundle: design.json: dataset.dots.counts.0: ")


def test_bundle_missing_results_rejected(client, study, bundle):
    data = rebuild(bundle, lambda members: members.pop("results.json"))
    assert reject(client, data) == (
        "bundle: the bundle has no results.json; export it again with `biaslab export`"
    )


def test_bundle_zip_bomb_rejected(study):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("results.csv", b"0" * (50 * 2**20))
    with pytest.raises(InvalidBundle, match="'results.csv' declares a compression ratio above"):
        read_bundle(buffer.getvalue())


def test_bundle_body_too_large_is_413(client, study):
    response = client.post(
        "/api/studies/import",
        content=b"PK\x03\x04" + b"0" * (MAX_BUNDLE_BYTES + 1),
        headers=ZIP,
    )
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"bundle: larger than the limit of {MAX_BUNDLE_BYTES:,} bytes"
    )


def test_bundle_wrong_media_type_is_415(client, study, bundle):
    response = client.post(
        "/api/studies/import", content=bundle, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 415
