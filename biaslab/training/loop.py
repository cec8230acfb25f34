"""The device-agnostic training loop: data, steps, metrics, snapshots and stop checks.

Nothing here imports Celery, HTTP or store code. The caller passes a
`TrainingCallbacks` object that receives metrics and snapshots and decides when
to stop, and `train` returns a `TrainingOutcome`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from biaslab.analysis.histogram import count_histogram
from biaslab.datasets.dots import DotsTrainingSet
from biaslab.design import DotsDataset, RunSpec
from biaslab.images import png_grid
from biaslab.models.base import GenerativeModel, LossTerms, build_model
from biaslab.probes.count import count_dots
from biaslab.training.callbacks import SnapshotData, TrainingCallbacks

logger = logging.getLogger(__name__)

# Metrics are reported every max(1, steps // METRICS_PER_RUN) steps and at the
# last step: 200 to 400 reports for runs of 200 steps or more.
METRICS_PER_RUN = 200
# The training histogram uses at least this many draws so its shape is smooth.
MIN_REFERENCE_SAMPLES = 10_000
# Samples are drawn this many at a time to bound the decoder's activation memory.
SAMPLE_CHUNK = 256
GRID_COLUMNS = 8
GRID_IMAGES = GRID_COLUMNS * GRID_COLUMNS


@dataclass(frozen=True)
class TrainingOutcome:
    """The end of a run: the last step done, and whether the callbacks requested the stop."""

    stopped: bool
    step: int


class LossAverager:
    """Sums of loss terms over a window of steps, kept on the model's device.

    Reading the means is the only point that waits for the device, so a GPU
    run syncs once per report instead of once per step.
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0

    def add(self, terms: LossTerms) -> None:
        for name, value in terms.items():
            total = self._sums.get(name)
            self._sums[name] = value if total is None else total + value
        self._steps += 1

    def pop_means(self) -> dict[str, float]:
        """Return each term's mean over the window and start a new window."""
        if self._steps == 0:
            return {}
        names = list(self._sums)
        means = (torch.stack([self._sums[name] for name in names]) / self._steps).tolist()
        self._sums.clear()
        self._steps = 0
        return dict(zip(names, means, strict=True))


def sample_images(model: GenerativeModel, count: int, generator: torch.Generator) -> np.ndarray:
    """Draw `count` images from the model as a (N, H, W, 3) float32 array in [0, 1]."""
    chunks = []
    for start in range(0, count, SAMPLE_CHUNK):
        samples = model.sample(min(SAMPLE_CHUNK, count - start), generator)  # (n, 3, H, W)
        chunks.append(samples.permute(0, 2, 3, 1))  # (n, H, W, 3)
    return torch.cat(chunks).float().cpu().numpy()


def take_snapshot(
    model: GenerativeModel,
    dataset: DotsDataset,
    step: int,
    losses: dict[str, float],
    sample_count: int,
    generator: torch.Generator,
) -> SnapshotData:
    """Sample the model, probe the samples and pack the result for the callbacks."""
    # The probe reads the model's outputs as they are: the decoder's pixel means
    # (the sigmoid of its logits), not Bernoulli draws from them. Binary pixel
    # noise would break dots apart, and the means are what the grid shows.
    images = sample_images(model, sample_count, generator)
    counts = count_dots(images, dataset.dot_radius)
    return SnapshotData(
        step=step,
        histograms={"count": count_histogram(counts)},
        losses=losses,
        grid_png=png_grid(images[:GRID_IMAGES], GRID_COLUMNS),
    )


def train(spec: RunSpec, callbacks: TrainingCallbacks, device: torch.device) -> TrainingOutcome:
    """Train the model that `spec` describes, reporting to `callbacks` as it goes."""
    config = spec.training

    # Seed everything the run draws from, so that the spec alone reproduces it.
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    data = DotsTrainingSet(spec.dataset, config.seed)
    model = build_model(spec, device)
    # Snapshots draw from their own generator, so taking them more or less
    # often leaves the training steps' random stream unchanged.
    sample_generator = torch.Generator(device=device).manual_seed(config.seed + 1)

    # Report the training distribution first, on the same bins as the snapshots.
    reference_counts = data.reference_counts(
        max(config.samples_per_snapshot, MIN_REFERENCE_SAMPLES)
    )
    callbacks.on_start(
        training_histograms={"count": count_histogram(reference_counts)}, device=str(device)
    )
    logger.info(
        "training %s on %s: %d steps of batch %d",
        spec.model.kind,
        device,
        config.steps,
        config.batch_size,
    )

    log_every = max(1, config.steps // METRICS_PER_RUN)
    metrics_window = LossAverager()
    snapshot_window = LossAverager()
    model.train()
    for step in range(1, config.steps + 1):
        last_step = step == config.steps

        # Fetch a batch: (B, H, W, 3) numpy -> (B, 3, H, W) tensor on the device.
        # The contiguous NCHW copy is deliberate, because CPU convolutions ran
        # slower on the permuted (channels-last) view with torch 2.13.
        batch = data.batch(config.batch_size)
        images = torch.from_numpy(batch.images).to(device).permute(0, 3, 1, 2).contiguous()

        # One optimizer step. Its loss terms stay on the device until reported.
        losses = model.training_step(images)
        metrics_window.add(losses)
        snapshot_window.add(losses)

        # Report mean losses since the previous report.
        if step % log_every == 0 or last_step:
            callbacks.on_metrics(step, metrics_window.pop_means())

        # Sample, probe and report the generated distribution.
        if step % config.snapshot_every == 0 or last_step:
            snapshot = take_snapshot(
                model,
                spec.dataset,
                step,
                snapshot_window.pop_means(),
                config.samples_per_snapshot,
                sample_generator,
            )
            callbacks.on_snapshot(snapshot)

        # Let the caller cancel between steps; after the last step there is nothing to stop.
        if step < config.steps and callbacks.should_stop(step):
            logger.info("training stopped on request after step %d of %d", step, config.steps)
            return TrainingOutcome(stopped=True, step=step)

    logger.info("training finished after %d steps", config.steps)
    return TrainingOutcome(stopped=False, step=config.steps)
