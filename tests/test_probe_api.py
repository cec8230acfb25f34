"""POST /api/probe and `biaslab probe` end to end, on rendered dots and on bad uploads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import TypeAdapter

from backend.app import create_app
from backend.routes import probe as probe_route
from biaslab.datasets.dots import render_counts
from biaslab.design import Dataset
from biaslab.families import family_for
from biaslab.images import to_uint8
from biaslab.probes.samples import MAX_UPLOAD_BYTES
from biaslab.settings import Settings
from biaslab.store.migrate import upgrade
from tests.examples import EXAMPLE_STUDY
from tests.test_probe_samples import declared_png

N_IMAGES = 200


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def dots() -> tuple[np.ndarray, np.ndarray]:
    """200 noisy 32x32 renders of 1-12 dots at radius 0.08, with their true counts."""
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 13, size=N_IMAGES)
    images = render_counts(counts, image_size=32, dot_radius=0.08, noise=0.03, rng=rng)
    return images, counts


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def post(client: TestClient, data: bytes, filename: str = "samples.npz", **fields: str | None):
    """Send a probe form; family is dots unless given, and a field set to None is left out."""
    form = {"family": "dots", **fields}
    return client.post(
        "/api/probe",
        files={"file": (filename, data, "application/octet-stream")},
        data={name: value for name, value in form.items() if value is not None},
    )


def exact_share(body: dict, counts: np.ndarray) -> float:
    returned = [image["count"] for image in body["images"]]
    return float(np.mean([got == int(true) for got, true in zip(returned, counts, strict=True)]))


def test_probe_npz_counts_rendered_dots(client, dots):
    images, counts = dots
    response = post(client, npz_bytes(images=images))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family"] == "dots"
    assert body["n_images"] == N_IMAGES
    assert body["image_size"] == [32, 32]
    assert body["source"] == {
        "format": "npz",
        "array": "images",
        "dtype": "float32",
        "layout": "NHWC",
    }
    assert [image["index"] for image in body["images"]] == list(range(N_IMAGES))
    assert exact_share(body, counts) >= 0.99
    histogram = body["histograms"]["count"]
    assert histogram["total"] == N_IMAGES
    assert sum(histogram["counts"]) + histogram["unrecognized"] == N_IMAGES
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    unrecognized = sum(image["count"] is None for image in body["images"])
    assert histogram["unrecognized"] == unrecognized
    assert histogram["unrecognized_share"] == pytest.approx(unrecognized / N_IMAGES)


def test_probe_png_zip_counts_rendered_dots(client, dots):
    images, counts = dots
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, image in enumerate(to_uint8(images)):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            archive.writestr(f"samples/{index:03d}.png", png.getvalue())
    response = post(client, buffer.getvalue(), "samples.zip")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"]["format"] == "png-zip"
    assert exact_share(body, counts) >= 0.99
    assert [image["name"] for image in body["images"]] == [
        f"samples/{index:03d}.png" for index in range(N_IMAGES)
    ], "each image names its archive member"


def test_probe_nchw_uint8_and_radius(client, dots):
    images, counts = dots
    data = npz_bytes(samples=to_uint8(images).transpose(0, 3, 1, 2))
    response = post(client, data, dot_radius="0.08")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"]["layout"] == "NCHW"
    assert body["source"]["array"] == "samples"
    assert exact_share(body, counts) >= 0.99


def test_content_length_over_limit_is_413(client):
    response = client.post(
        "/api/probe",
        content=b"x" * 100,
        headers={
            "content-type": "multipart/form-data; boundary=b",
            "content-length": str(probe_route.MAX_BODY_BYTES + 1),
        },
    )
    assert response.status_code == 413
    assert "larger than 67,174,400 bytes" in response.json()["detail"]


def test_streamed_body_over_limit_is_413(client):
    # A chunked body declares no length, so only counting the bytes can stop it.
    chunk = b"\0" * 2**20

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.npz"\r\n\r\n'
        for _ in range(MAX_UPLOAD_BYTES // len(chunk) + 2):
            yield chunk

    response = client.post(
        "/api/probe", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413
    assert "files may have at most 67,108,864 bytes (64 MiB)" in response.json()["detail"]


def test_small_limit_stops_reading(client, monkeypatch, dots):
    monkeypatch.setattr(probe_route, "MAX_BODY_BYTES", 10_000)
    response = post(client, npz_bytes(images=dots[0][:20]))
    assert response.status_code == 413


def test_unknown_family_is_422(client, dots):
    response = post(client, npz_bytes(images=dots[0][:4]), family="stars")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["field"] == "family"
    assert error["message"].startswith("family: 'stars' is invalid: use one of ")
    assert "dots" in error["message"]


def test_missing_fields_are_422(client):
    response = client.post("/api/probe", files={"other": ("a", b"x")}, data={"x": "1"})
    assert response.status_code == 422
    messages = [error["message"] for error in response.json()["detail"]]
    assert "file: missing, this field is required" in messages
    assert "x: '1' is invalid: Extra inputs are not permitted" in messages
    assert not any(message.startswith("family") for message in messages), "family is optional"


def test_family_defaults_to_dots(client, dots):
    images, counts = dots
    response = client.post(
        "/api/probe", files={"file": ("samples.npz", npz_bytes(images=images[:20]))}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family"] == "dots"
    assert body["study_id"] is None
    assert body["scores"] == {}
    assert set(body["images"][0]) >= {"index", "count"}
    assert set(body["images"][0]) - {"index"} == set(body["histograms"]), "a value per feature"
    assert exact_share(body, counts[:20]) >= 0.95


def test_probe_against_study(client, dots):
    images, counts = dots
    study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    response = post(client, npz_bytes(images=images), study_id=str(study["id"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["study_id"] == study["id"]
    assert body["family"] == "dots"
    assert exact_share(body, counts) >= 0.99


def test_probe_study_errors(client, dots):
    data = npz_bytes(images=dots[0][:4])
    missing = post(client, data, study_id="999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "study_id: study 999 not found"}

    not_a_number = post(client, data, study_id="first")
    assert not_a_number.status_code == 422
    assert not_a_number.json()["detail"][0]["field"] == "study_id"

    study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    with_radius = post(client, data, study_id=str(study["id"]), dot_radius="0.1")
    assert with_radius.status_code == 422
    assert with_radius.json()["detail"].startswith(
        f"dot_radius: 0.1 is not used: the design of study {study['id']} sets the dot radius"
    )


def test_study_family_without_study_is_422(client, dots, monkeypatch):
    # Families that compare samples with a training set cannot be probed without a study.
    monkeypatch.setattr("biaslab.families.probing.STUDY_FAMILIES", frozenset({"dots"}))
    response = post(client, npz_bytes(images=dots[0][:4]))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "study_id: missing: dots samples are compared with a study's training set; "
        "send the study_id of a dots study"
    )


def test_dot_radius_limits_are_422(client, dots):
    data = npz_bytes(images=dots[0][:4])
    response = post(client, data, dot_radius="0.2")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["message"] == (
        "dot_radius: '0.2' is invalid: Input should be a number from 0.04 to 0.15"
    )
    for text in ("nan", "inf", "-Infinity"):
        not_finite = post(client, data, dot_radius=text)
        assert not_finite.status_code == 422
        assert not_finite.json()["detail"][0]["message"] == (
            f"dot_radius: '{text}' is invalid: Input should be a finite number"
        )
    too_small = post(client, data, dot_radius="0.06")
    assert too_small.status_code == 422
    detail = too_small.json()["detail"]
    assert detail.startswith("dot_radius: 0.06 is 1.92 px in images 32 px wide")
    assert "use a dot_radius of at least 0.078" in detail


def test_bad_content_is_422(client, dots):
    images = dots[0][:4].copy()
    images[0, 0, 0, 0] = np.nan
    response = post(client, npz_bytes(images=images))
    assert response.status_code == 422
    assert response.json() == {
        "detail": "file: array 'images' has 1 invalid values (1 NaN, 0 outside [0, 1]); "
        "float images must lie in [0, 1]"
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.png", b"x")
    traversal = post(client, buffer.getvalue(), "a.zip")
    assert traversal.status_code == 422
    assert traversal.json()["detail"].startswith("file: member '../evil.png' contains '..'")


def oversized_png_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.png", declared_png(16_000, 16_000))
    return buffer.getvalue()


def test_oversized_png_is_422(client):
    response = post(client, oversized_png_zip(), "big.zip")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "file: member 'big.png' has images of 16000x16000 = 256,000,000 pixels, "
        "above the limit of 65,536 (256x256)"
    }


def test_unknown_file_type_is_415(client):
    response = post(client, b"GIF89a" + bytes(100), "a.gif")
    assert response.status_code == 415
    assert response.json()["detail"].startswith("file: unsupported file type")
    not_a_form = client.post("/api/probe", json={"family": "dots"})
    assert not_a_form.status_code == 415
    assert "multipart/form-data" in not_a_form.json()["detail"]


def test_truncated_multipart_is_400(client):
    response = client.post(
        "/api/probe",
        content=b'--b\r\nContent-Disposition: form-data; name="family"\r\n\r\ndots',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    assert "ends before the closing boundary" in response.json()["detail"]


def test_openapi_documents_probe(client):
    operation = client.get("/openapi.json").json()["paths"]["/api/probe"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert set(form["properties"]) == {"file", "family", "study_id", "dot_radius"}
    assert {"413", "415", "422"} <= set(operation["responses"])


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "probe", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_json_matches_api(client, dots, tmp_path):
    images, counts = dots
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=images))
    result = run_cli(str(path), "--family", "dots", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert exact_share(printed, counts) >= 0.99
    assert printed == post(client, path.read_bytes()).json()


def test_cli_table(dots, tmp_path):
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=dots[0][:10]))
    result = run_cli(str(path), "--family", "dots", "--dot-radius", "0.08")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "10 images of 32x32 (npz array 'images', float32, NHWC)"
    # One table per feature: a header named after the feature, rows, then "unrecognized".
    header = lines.index(next(line for line in lines if line.split()[:1] == ["count"]))
    assert lines[header].split() == ["count", "number", "share"]
    end = next(i for i in range(header, len(lines)) if lines[i].split()[:1] == ["unrecognized"])
    rows = [line.split() for line in lines[header + 1 : end]]
    assert sum(int(row[1]) for row in rows) + int(lines[end].split()[1]) == 10
    assert all(row[2].endswith("%") for row in rows)


def test_cli_bad_file_exits_2(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = run_cli(str(path), "--family", "dots")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, "the error is one line"
    assert result.stderr.startswith(f"error: {path}: unsupported file type")
    missing = run_cli(str(tmp_path / "missing.npz"), "--family", "dots")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'missing.npz'}: No such file or directory"


@pytest.mark.parametrize(
    ("radius", "message"),
    [
        ("nan", "nan is outside 0.04 to 0.15 of the image width"),
        ("0.2", "0.2 is outside 0.04 to 0.15 of the image width"),
    ],
)
def test_cli_dot_radius_out_of_range(tmp_path, dots, radius, message):
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=dots[0][:2]))
    result = run_cli(str(path), "--dot-radius", radius)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: --dot-radius: {message}"


def test_cli_study_without_lab_writes_nothing(tmp_path, dots):
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=dots[0][:2]))
    empty = tmp_path / "no-lab"
    result = run_cli(str(path), "--study-id", "1", "--data-dir", str(empty))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"error: --study-id: no lab database at {empty.resolve() / 'biaslab.sqlite'}; run"
    ), result.stderr
    assert not empty.exists(), "probing created a data folder"


def test_cli_oversized_png_exits_2(tmp_path):
    path = tmp_path / "big.zip"
    path.write_bytes(oversized_png_zip())
    result = run_cli(str(path), "--family", "dots")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: {path}: member 'big.png' has images of 16000x16000 = 256,000,000 pixels, "
        "above the limit of 65,536 (256x256)"
    )


def test_cli_probes_against_study(client, dots, tmp_path):
    # The client fixture's lab keeps its database in tmp_path, as `--data-dir` does.
    images, counts = dots
    study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=images))

    result = run_cli(
        str(path), "--study-id", str(study["id"]), "--data-dir", str(tmp_path), "--json"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["study_id"] == study["id"]
    assert exact_share(printed, counts) >= 0.99

    missing = run_cli(str(path), "--study-id", "99", "--data-dir", str(tmp_path))
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: --study-id: study 99 not found"


def render_family(dataset: dict, n: int, seed: int = 0):
    design = TypeAdapter(Dataset).validate_python(dataset)
    return family_for(design).render(design, n, np.random.default_rng(seed))


def test_probe_pie_without_study(client):
    batch = render_family({"family": "pie", "values": [[3, 5, 5, 7]]}, 50)
    response = post(client, npz_bytes(images=batch.images), family="pie")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family"] == "pie"
    assert set(body["histograms"]) == set(batch.features)
    assert set(body["images"][0]) == {"index", *batch.features}
    size = body["histograms"]["size"]
    assert size["total"] == 50
    assert size["counts"].index(max(size["counts"])) == 2, "most pies read as size 3"
    assert body["scores"] == {}


def test_probe_other_family_rejects_dot_radius(client):
    batch = render_family({"family": "pie"}, 4)
    response = post(client, npz_bytes(images=batch.images), family="pie", dot_radius="0.08")
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "dot_radius: 0.08 is not used: dot_radius applies to the dots family only"
    )


@pytest.mark.parametrize("family", ["combinations", "shapes"])
def test_probe_needs_study_for_training_set_families(client, family):
    batch = render_family({"family": "pie"}, 4)
    response = post(client, npz_bytes(images=batch.images), family=family)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"study_id: missing: {family} samples are compared with a study's training set; "
        f"send the study_id of a {family} study"
    )


def test_probe_combinations_against_study(client):
    dataset = {"family": "combinations", "combinations": 6, "selection_seed": 3}
    study = client.post("/api/studies", json={**EXAMPLE_STUDY, "dataset": dataset}).json()
    # Training images of the study itself fall in its training cells.
    batch = render_family(dataset, 80, seed=5)

    response = post(client, npz_bytes(images=batch.images), family=None, study_id=str(study["id"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family"] == "combinations", "the family comes from the study"
    assert body["study_id"] == study["id"]
    assert body["scores"]["precision"] >= 0.9
    assert body["scores"]["recall"] >= 0.9, "80 images cover all 6 training cells"

    mismatch = post(client, npz_bytes(images=batch.images), family="pie", study_id=str(study["id"]))
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"].startswith(
        f"family: 'pie' does not match study {study['id']}, whose dataset family is 'combinations'"
    )
