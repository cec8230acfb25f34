"""Checkpoints of `biaslab.training.checkpoint`, and resuming and divergence in the loop."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import RunSpec
from biaslab.training.callbacks import SnapshotData
from biaslab.training.checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from biaslab.training.loop import TrainingDivergedError, TrainingOutcome, train

CPU = torch.device("cpu")


def make_spec(
    steps: int = 7,
    snapshot_every: int = 3,
    checkpoint_every: int = 500,
    learning_rate: float = 1e-3,
    training_images: int | None = None,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {
                "family": "dots",
                "counts": [1, 3],
                "image_size": 32,
                "training_images": training_images,
            },
            "model": {"kind": "vae", "z_dim": 4},
            "training": {
                "steps": steps,
                "batch_size": 8,
                "learning_rate": learning_rate,
                "snapshot_every": snapshot_every,
                "checkpoint_every": checkpoint_every,
                "samples_per_snapshot": 64,
                "seed": 3,
            },
        }
    )


@dataclass
class Recorder:
    """Records metrics and snapshots, and requests a stop after step `stop_after` when set."""

    stop_after: int | None = None
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    snapshots: list[SnapshotData] = field(default_factory=list)

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        pass

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        self.metrics.append((step, losses))

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        self.snapshots.append(snapshot)

    def should_stop(self, step: int) -> bool:
        return step == self.stop_after


def holds_adam_moments(state: object) -> bool:
    """Return True when a nested optimizer state contains a tensor named exp_avg anywhere."""
    if isinstance(state, dict):
        if isinstance(state.get("exp_avg"), torch.Tensor):
            return True
        return any(holds_adam_moments(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return any(holds_adam_moments(value) for value in state)
    return False


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "1" / "checkpoint.pt"
    train(make_spec(steps=3, snapshot_every=3), Recorder(), CPU, checkpoint_path=path)

    checkpoint = load_checkpoint(path)

    assert checkpoint.step == 3
    assert checkpoint.spec == make_spec(steps=3, snapshot_every=3).model_dump(mode="json")
    assert set(checkpoint.model) >= {"network", "optimizer"}
    assert all(
        isinstance(value, torch.Tensor) and value.device == CPU
        for value in checkpoint.model["network"].values()
    )
    assert holds_adam_moments(checkpoint.model["optimizer"]), "Adam moments are saved"
    assert set(checkpoint.random_state) >= {
        "torch",
        "numpy",
        "python",
        "data",
        "sample_generator",
    }
    assert checkpoint.random_state["data"]["bit_generator"] == "PCG64"
    assert set(checkpoint.loss_windows) == {"metrics", "snapshot"}

    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, checkpoint)
    again = load_checkpoint(copy)
    assert again.step == checkpoint.step
    assert again.spec == checkpoint.spec
    for name, value in checkpoint.model["network"].items():
        assert torch.equal(again.model["network"][name], value), name
    assert torch.equal(again.random_state["torch"], checkpoint.random_state["torch"])
    assert again.random_state["numpy"] == checkpoint.random_state["numpy"]
    assert again.random_state["python"] == checkpoint.random_state["python"]


def test_save_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint = Checkpoint(step=1, spec={}, model={}, random_state={}, loss_windows={})

    save_checkpoint(path, checkpoint)
    save_checkpoint(path, Checkpoint(step=2, spec={}, model={}, random_state={}, loss_windows={}))

    assert [child.name for child in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert load_checkpoint(path).step == 2


def test_failed_save_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, Checkpoint(step=1, spec={}, model={}, random_state={}, loss_windows={}))

    def failing_save(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(
            path, Checkpoint(step=2, spec={}, model={}, random_state={}, loss_windows={})
        )

    monkeypatch.undo()
    assert [child.name for child in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert load_checkpoint(path).step == 1


def test_load_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")


def test_load_garbage_raises(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")

    with pytest.raises(CheckpointError, match="is unreadable"):
        load_checkpoint(path)


def test_load_other_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"version": CHECKPOINT_VERSION + 1, "step": 1}, path)

    with pytest.raises(CheckpointError, match=f"layout version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint(path)


def test_resume_rejects_other_spec(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    train(make_spec(steps=3, snapshot_every=3), Recorder(), CPU, checkpoint_path=path)
    checkpoint = load_checkpoint(path)

    with pytest.raises(CheckpointError, match="another run spec"):
        checkpoint.check_resumable(make_spec(steps=4, snapshot_every=3), CPU)
    with pytest.raises(CheckpointError, match="another run spec"):
        train(make_spec(steps=4, snapshot_every=3), Recorder(), CPU, resume_from=checkpoint)


def test_checkpoint_steps_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    real_save = save_checkpoint

    def recording_save(path: Path, checkpoint: Checkpoint) -> None:
        saved.append(checkpoint.step)
        real_save(path, checkpoint)

    monkeypatch.setattr("biaslab.training.loop.save_checkpoint", recording_save)
    path = tmp_path / "checkpoint.pt"

    train(make_spec(steps=10, snapshot_every=4, checkpoint_every=3), Recorder(), CPU, path)
    assert saved == [3, 4, 6, 8, 9, 10], "every 3 steps and at every snapshot"

    saved.clear()
    outcome = train(make_spec(), Recorder(stop_after=5), CPU, checkpoint_path=path)
    assert outcome == TrainingOutcome(stopped=True, step=5)
    assert saved == [3, 5], "at the snapshot and at the stop"
    assert load_checkpoint(path).step == 5


@pytest.mark.parametrize("training_images", [None, 64], ids=["fresh", "fixed-set"])
def test_resume_repeats_uninterrupted_run(tmp_path: Path, training_images: int | None) -> None:
    spec = make_spec(training_images=training_images)
    uninterrupted = Recorder()
    train(spec, uninterrupted, CPU)

    # Stopped after step 4, between the snapshots at 3 and 6, so the snapshot
    # window that the checkpoint carries over contains step 4's losses.
    path = tmp_path / "checkpoint.pt"
    first = Recorder(stop_after=4)
    assert train(spec, first, CPU, path) == TrainingOutcome(stopped=True, step=4)
    checkpoint = load_checkpoint(path)
    assert checkpoint.step == 4
    resumed = Recorder()
    outcome = train(spec, resumed, CPU, path, resume_from=checkpoint)

    assert outcome == TrainingOutcome(stopped=False, step=7)
    assert first.metrics + resumed.metrics == uninterrupted.metrics
    assert [s.step for s in resumed.snapshots] == [6, 7]
    for expected, actual in zip(uninterrupted.snapshots[1:], resumed.snapshots, strict=True):
        assert actual.losses == expected.losses, actual.step
        assert actual.histograms == expected.histograms, actual.step
        assert actual.grid_png == expected.grid_png, actual.step


def test_resume_at_last_step_trains_nothing(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    train(make_spec(), Recorder(), CPU, path)
    checkpoint = load_checkpoint(path)
    resumed = Recorder()

    outcome = train(make_spec(), resumed, CPU, path, resume_from=checkpoint)

    assert checkpoint.step == 7
    assert outcome == TrainingOutcome(stopped=False, step=7)
    assert resumed.metrics == []
    assert resumed.snapshots == []


def test_divergence_raises_with_step(tmp_path: Path) -> None:
    # Adam at a learning rate of 1.0 overflows this VAE's KL term within a few steps.
    spec = make_spec(steps=20, snapshot_every=20, learning_rate=1.0)
    callbacks = Recorder()
    path = tmp_path / "checkpoint.pt"

    with pytest.raises(TrainingDivergedError) as raised:
        train(spec, callbacks, CPU, path)

    error = raised.value
    assert 1 < error.step < 20
    assert re.fullmatch(
        rf"diverged at step {error.step}: loss is (nan|inf)(, \w+ is -?(nan|inf))*", str(error)
    )
    assert not math.isfinite(error.terms["loss"])
    assert [step for step, _ in callbacks.metrics] == list(range(1, error.step)), (
        "metrics stop before the first non-finite step"
    )
    assert all(math.isfinite(value) for _, losses in callbacks.metrics for value in losses.values())
    assert callbacks.snapshots == []
    assert not path.exists(), "a diverged model is never checkpointed"
