from __future__ import annotations

import io
import platform
from dataclasses import dataclass, field

import pytest
import torch
from PIL import Image

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import RunSpec
from biaslab.families import family_for
from biaslab.training.callbacks import SnapshotData
from biaslab.training.device import keep_freed_memory, select_device, set_torch_threads
from biaslab.training.loop import GRID_COLUMNS, LossAverager, TrainingOutcome, train

CPU = torch.device("cpu")
IMAGE_SIZE = 32
SAMPLES = 64


def make_spec(
    steps: int = 7, snapshot_every: int = 3, batch_size: int = 8, seed: int = 0
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [1, 3], "image_size": IMAGE_SIZE},
            "model": {"kind": "vae", "z_dim": 4},
            "training": {
                "steps": steps,
                "batch_size": batch_size,
                "snapshot_every": snapshot_every,
                "samples_per_snapshot": SAMPLES,
                "seed": seed,
            },
        }
    )


@dataclass
class RecordingCallbacks:
    """Records every call in order, and requests a stop after step `stop_after` when set."""

    stop_after: int | None = None
    events: list[str] = field(default_factory=list)
    training_histograms: list[dict[str, FeatureHistogram]] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    snapshots: list[SnapshotData] = field(default_factory=list)
    stop_checks: list[int] = field(default_factory=list)

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        self.events.append("start")
        self.training_histograms.append(training_histograms)
        self.devices.append(device)

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        self.events.append(f"metrics {step}")
        self.metrics.append((step, losses))

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        self.events.append(f"snapshot {snapshot.step}")
        self.snapshots.append(snapshot)

    def should_stop(self, step: int) -> bool:
        self.stop_checks.append(step)
        return step == self.stop_after


@pytest.fixture(scope="module")
def full_run() -> tuple[TrainingOutcome, RecordingCallbacks]:
    callbacks = RecordingCallbacks()
    outcome = train(make_spec(), callbacks, CPU)
    return outcome, callbacks


def test_run_ends_after_all_steps(full_run: tuple[TrainingOutcome, RecordingCallbacks]) -> None:
    outcome, callbacks = full_run

    assert outcome == TrainingOutcome(stopped=False, step=7)
    assert callbacks.stop_checks == [1, 2, 3, 4, 5, 6], "no stop check after the last step"


def test_on_start_once_before_steps(full_run: tuple[TrainingOutcome, RecordingCallbacks]) -> None:
    _, callbacks = full_run

    assert callbacks.events[0] == "start"
    assert callbacks.events.count("start") == 1
    assert callbacks.devices == ["cpu"]
    spec = make_spec()
    names = {feature.name for feature in family_for(spec.dataset).features(spec.dataset)}
    assert set(callbacks.training_histograms[0]) == names, "one histogram per feature"
    histogram = callbacks.training_histograms[0]["count"]
    assert histogram.labels[:3] == ["1", "2", "3"]
    assert histogram.total >= SAMPLES
    assert histogram.unrecognized == 0
    # Training counts are 1 and 3, one bin per integer from 1 up.
    assert histogram.counts[0] > 0
    assert histogram.counts[2] > 0
    assert histogram.counts[0] + histogram.counts[2] == histogram.total


def test_snapshot_steps_and_contents(full_run: tuple[TrainingOutcome, RecordingCallbacks]) -> None:
    _, callbacks = full_run

    assert [snapshot.step for snapshot in callbacks.snapshots] == [3, 6, 7]
    for snapshot in callbacks.snapshots:
        histogram = snapshot.histograms["count"]
        assert histogram.total == SAMPLES, snapshot.step
        assert sum(histogram.counts) + histogram.unrecognized == SAMPLES, snapshot.step
        assert set(snapshot.losses) == {"loss", "reconstruction", "kl"}, snapshot.step
        assert snapshot.histograms["count"].edges == histogram_edges(callbacks), snapshot.step
        assert snapshot.scores == {}, "dots define no scores"


def histogram_edges(callbacks: RecordingCallbacks) -> list[float]:
    return callbacks.training_histograms[0]["count"].edges


def test_snapshot_grid_is_8x8_tiles(full_run: tuple[TrainingOutcome, RecordingCallbacks]) -> None:
    _, callbacks = full_run

    grid = Image.open(io.BytesIO(callbacks.snapshots[-1].grid_png))

    assert grid.format == "PNG"
    # Tiles may be separated by padding, but never scaled down.
    side = GRID_COLUMNS * IMAGE_SIZE
    assert side <= grid.width < side + GRID_COLUMNS * 8
    assert side <= grid.height < side + GRID_COLUMNS * 8


def test_metrics_every_step_when_short(
    full_run: tuple[TrainingOutcome, RecordingCallbacks],
) -> None:
    _, callbacks = full_run

    assert [step for step, _ in callbacks.metrics] == [1, 2, 3, 4, 5, 6, 7]
    for step, losses in callbacks.metrics:
        assert set(losses) == {"loss", "reconstruction", "kl"}, step
        assert all(isinstance(value, float) for value in losses.values()), step


def test_snapshot_losses_average_window(
    full_run: tuple[TrainingOutcome, RecordingCallbacks],
) -> None:
    _, callbacks = full_run
    step_losses = {step: losses["loss"] for step, losses in callbacks.metrics}

    snapshot_at_6 = callbacks.snapshots[1]

    expected = (step_losses[4] + step_losses[5] + step_losses[6]) / 3
    assert snapshot_at_6.losses["loss"] == pytest.approx(expected, rel=1e-5)


def test_stop_request_ends_run() -> None:
    callbacks = RecordingCallbacks(stop_after=4)

    outcome = train(make_spec(), callbacks, CPU)

    assert outcome == TrainingOutcome(stopped=True, step=4)
    assert callbacks.stop_checks == [1, 2, 3, 4]
    assert [step for step, _ in callbacks.metrics] == [1, 2, 3, 4]
    assert [snapshot.step for snapshot in callbacks.snapshots] == [3]


def test_same_seed_same_run() -> None:
    first, second = RecordingCallbacks(), RecordingCallbacks()

    train(make_spec(steps=4, snapshot_every=4), first, CPU)
    train(make_spec(steps=4, snapshot_every=4), second, CPU)

    assert first.metrics == second.metrics
    assert first.snapshots[0].histograms == second.snapshots[0].histograms
    assert first.snapshots[0].grid_png == second.snapshots[0].grid_png


def test_metrics_thin_out_on_long_runs() -> None:
    # 401 steps give one report every 401 // 200 = 2 steps, plus one at the last step.
    callbacks = RecordingCallbacks()

    train(make_spec(steps=401, snapshot_every=401, batch_size=1), callbacks, CPU)

    assert [step for step, _ in callbacks.metrics] == [*range(2, 401, 2), 401]
    assert [snapshot.step for snapshot in callbacks.snapshots] == [401]


def test_loss_averager_means_and_resets() -> None:
    averager = LossAverager()
    averager.add({"loss": torch.tensor(1.0), "kl": torch.tensor(4.0)})
    averager.add({"loss": torch.tensor(3.0), "kl": torch.tensor(0.0)})

    assert averager.pop_means() == {"loss": 2.0, "kl": 2.0}
    assert averager.pop_means() == {}


def test_snapshots_leave_training_unchanged() -> None:
    rare, frequent = RecordingCallbacks(), RecordingCallbacks()

    train(make_spec(steps=4, snapshot_every=4), rare, CPU)
    train(make_spec(steps=4, snapshot_every=1), frequent, CPU)

    assert len(frequent.snapshots) == 4
    assert rare.metrics == frequent.metrics


def test_select_device_cpu_and_auto() -> None:
    assert select_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_select_device_cuda_missing_raises() -> None:
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        select_device("cuda")


def test_set_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
        set_torch_threads(None)
        assert torch.get_num_threads() == 1, "None must keep the current count"
        with pytest.raises(ValueError, match="thread count 0"):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_keep_freed_memory_on_glibc() -> None:
    assert keep_freed_memory()


def test_stop_at_last_step_completes() -> None:
    callbacks = RecordingCallbacks(stop_after=7)
    outcome = train(make_spec(), callbacks, CPU)
    assert outcome == TrainingOutcome(stopped=False, step=7), "a fully trained run is not stopped"
    assert callbacks.snapshots[-1].step == 7


@pytest.mark.parametrize(
    ("dataset", "score_names"),
    [
        ({"family": "pie"}, set()),
        ({"family": "combinations", "combinations": 5}, {"precision", "recall"}),
    ],
    ids=["pie", "combinations"],
)
def test_other_family_reports_every_feature(dataset: dict, score_names: set[str]) -> None:
    spec = RunSpec.model_validate(
        {
            "dataset": dataset,
            "model": {"kind": "vae", "z_dim": 4},
            "training": {
                "steps": 2,
                "batch_size": 8,
                "snapshot_every": 2,
                "samples_per_snapshot": SAMPLES,
            },
        }
    )
    family = family_for(spec.dataset)
    names = {feature.name for feature in family.features(spec.dataset)}
    callbacks = RecordingCallbacks()

    train(spec, callbacks, CPU)

    assert set(callbacks.training_histograms[0]) == names
    [snapshot] = callbacks.snapshots
    assert set(snapshot.histograms) == names
    for name, histogram in snapshot.histograms.items():
        assert histogram.total == SAMPLES, name
        assert sum(histogram.counts) + histogram.unrecognized == SAMPLES, name
    assert score_names <= set(snapshot.scores)
    if not score_names:
        assert snapshot.scores == {}
