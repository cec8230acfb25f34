"""Run folders in the artifact root, and their deletion with their study."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from biaslab.artifacts import delete_run_artifacts, run_relative_dir
from biaslab.settings import Settings
from biaslab.store.migrate import upgrade
from tests.examples import EXAMPLE_STUDY
from worker.store_callbacks import checkpoint_relative_path, grid_relative_path


def write_run_files(artifact_dir: Path, run_id: int) -> Path:
    """Write a checkpoint and a sample grid where the worker writes them; return their folder."""
    for relative in (checkpoint_relative_path(run_id), grid_relative_path(run_id, 10)):
        path = artifact_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"run files")
    return artifact_dir / run_relative_dir(run_id)


def test_worker_paths_are_in_run_folder():
    assert checkpoint_relative_path(7).parent == run_relative_dir(7)
    assert grid_relative_path(7, 250).parent == run_relative_dir(7)


def test_delete_run_artifacts(tmp_path):
    first = write_run_files(tmp_path, 1)
    other = write_run_files(tmp_path, 2)

    deleted = delete_run_artifacts(tmp_path, [1, 3])

    assert deleted == [1], "run 3 had no folder"
    assert not first.exists()
    assert (other / "checkpoint.pt").is_file(), "another run's files stay"


@pytest.fixture
def settings(tmp_path) -> Settings:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    return settings


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_study_delete_removes_run_folders(client, settings):
    deleted_study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    kept_study = client.post("/api/studies", json=EXAMPLE_STUDY).json()
    artifact_dir = settings.resolved_artifact_dir
    deleted_folder = write_run_files(artifact_dir, deleted_study["run_ids"][0])
    kept_folder = write_run_files(artifact_dir, kept_study["run_ids"][0])

    response = client.delete(f"/api/studies/{deleted_study['id']}")

    assert response.status_code == 204
    assert not deleted_folder.exists(), "the deleted run's checkpoint and grids remain"
    assert (kept_folder / "checkpoint.pt").is_file(), "another study's run files were deleted"
