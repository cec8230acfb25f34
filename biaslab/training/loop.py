"""The device-agnostic training loop: data, steps, metrics, snapshots, checkpoints, stop checks.

Nothing here imports Celery, HTTP or store code. The caller passes a
`TrainingCallbacks` object that receives metrics and snapshots and decides when
to stop, and `train` returns a `TrainingOutcome`. The caller also chooses where
checkpoints go and which checkpoint, if any, a run resumes from.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biaslab.design import RunSpec
from biaslab.design.base import Strict
from biaslab.families.base import DatasetFamily
from biaslab.families.training_set import TrainingSet
from biaslab.images import png_grid
from biaslab.models.base import GenerativeModel, LossTerms, build_model
from biaslab.training.callbacks import SnapshotData, TrainingCallbacks
from biaslab.training.checkpoint import (
    Checkpoint,
    capture_random_state,
    restore_random_state,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

# Metrics are reported every max(1, steps // METRICS_PER_RUN) steps and at the
# last step: 200 to 400 reports for runs of 200 steps or more.
METRICS_PER_RUN = 200
# The training histograms use at least this many images so their shapes are smooth.
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

    def state_dict(self) -> dict[str, Any]:
        """Return the window's partial sums and step count, for a checkpoint."""
        return {"sums": dict(self._sums), "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore what `state_dict` returned, moving the sums to `device`."""
        self._sums = {name: value.to(device) for name, value in state["sums"].items()}
        self._steps = int(state["steps"])


class TrainingDivergedError(RuntimeError):
    """A loss term became NaN or infinite; `step` is the first step where one did."""

    def __init__(self, step: int, terms: dict[str, float]) -> None:
        self.step = step
        self.terms = terms
        # str() of a float gives "nan", "inf" or "-inf".
        described = ", ".join(f"{name} is {value}" for name, value in terms.items())
        super().__init__(f"diverged at step {step}: {described}")


class DivergenceWatch:
    """The first step at which each loss term was non-finite, kept on the model's device.

    `add` runs every step without waiting for the device. Only
    `raise_if_diverged` reads the result back, so like `LossAverager` it syncs
    once per report rather than once per step.
    """

    def __init__(self) -> None:
        self._names: list[str] = []
        # Per term, the first non-finite step (0 while finite) and the value there.
        self._first_step: torch.Tensor | None = None  # (T,) int64
        self._first_value: torch.Tensor | None = None  # (T,) float32

    def add(self, step: int, terms: LossTerms) -> None:
        if self._first_step is None or self._first_value is None:
            self._names = list(terms)
            device = terms[self._names[0]].device
            self._first_step = torch.zeros(len(self._names), dtype=torch.int64, device=device)
            self._first_value = torch.zeros(len(self._names), device=device)
        values = torch.stack([terms[name].float() for name in self._names])  # (T,)
        new = ~torch.isfinite(values) & (self._first_step == 0)
        self._first_step = torch.where(new, step, self._first_step)
        self._first_value = torch.where(new, values, self._first_value)

    def raise_if_diverged(self) -> None:
        """Raise TrainingDivergedError when any term was non-finite at any step so far."""
        if self._first_step is None or self._first_value is None:
            return
        first_steps = self._first_step.tolist()
        diverged_steps = [step for step in first_steps if step > 0]
        if not diverged_steps:
            return
        step = min(diverged_steps)
        values = self._first_value.tolist()
        terms = {
            name: value
            for name, first, value in zip(self._names, first_steps, values, strict=True)
            if first == step
        }
        raise TrainingDivergedError(step, terms)


def sample_images(model: GenerativeModel, count: int, generator: torch.Generator) -> np.ndarray:
    """Draw `count` images from the model as a (N, H, W, 3) float32 array in [0, 1]."""
    chunks = []
    for start in range(0, count, SAMPLE_CHUNK):
        samples = model.sample(min(SAMPLE_CHUNK, count - start), generator)  # (n, 3, H, W)
        chunks.append(samples.permute(0, 2, 3, 1))  # (n, H, W, 3)
    return torch.cat(chunks).float().cpu().numpy()


def take_snapshot(
    model: GenerativeModel,
    family: DatasetFamily[Any],
    dataset: Strict,
    step: int,
    losses: dict[str, float],
    sample_count: int,
    generator: torch.Generator,
) -> SnapshotData:
    """Sample the model, probe every feature of the samples and pack the result."""
    # The probe reads the model's outputs as they are: the decoder's pixel means
    # (the sigmoid of its logits), not Bernoulli draws from them. Binary pixel
    # noise would break dots apart, and the means are what the grid shows.
    images = sample_images(model, sample_count, generator)
    probed = family.probe(images, dataset)
    return SnapshotData(
        step=step,
        histograms=family.histograms(dataset, probed),
        losses=losses,
        grid_png=png_grid(images[:GRID_IMAGES], GRID_COLUMNS),
        scores=family.scores(dataset, probed),
    )


def train(
    spec: RunSpec,
    callbacks: TrainingCallbacks,
    device: torch.device,
    checkpoint_path: Path | None = None,
    resume_from: Checkpoint | None = None,
) -> TrainingOutcome:
    """Train the model that `spec` describes, reporting to `callbacks` as it goes.

    With `checkpoint_path`, a checkpoint is written there every
    `checkpoint_every` steps, at every snapshot, and when the callbacks stop the
    run. With `resume_from`, training continues at the step after the
    checkpoint's, and the metrics and snapshots after that step are reported
    again, so the caller must discard any it stored before.

    Raises TrainingDivergedError when a loss term becomes NaN or infinite. The
    check runs before every metrics report, snapshot and checkpoint, so a
    non-finite loss is never reported and a diverged model is never saved.
    """
    config = spec.training

    # Seed everything the run draws from, so that the spec alone reproduces it.
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    data = TrainingSet(spec.dataset, config.seed)
    model = build_model(spec, device)
    # Snapshots draw from their own generator, so taking them more or less
    # often leaves the training steps' random stream unchanged.
    sample_generator = torch.Generator(device=device).manual_seed(config.seed + 1)

    # Report the training distribution of every feature first, on the same bins as
    # the snapshots. Its images come from a generator of their own, so a resumed
    # run reports the same.
    reference = data.reference_features(max(config.samples_per_snapshot, MIN_REFERENCE_SAMPLES))
    callbacks.on_start(
        training_histograms=data.family.histograms(spec.dataset, reference), device=str(device)
    )

    # Continue from the checkpoint, when there is one: weights, optimizer, random
    # states and the loss windows' partial sums, so no step runs twice.
    windows = {"metrics": LossAverager(), "snapshot": LossAverager()}
    first_step = 1
    if resume_from is not None:
        resume_from.check_resumable(spec, device)
        model.load_state_dict(resume_from.model)
        restore_random_state(resume_from.random_state, data, sample_generator)
        for name, window in windows.items():
            window.load_state_dict(resume_from.loss_windows[name], device)
        first_step = resume_from.step + 1
        logger.info("resuming from the checkpoint at step %d", resume_from.step)
    logger.info(
        "training %s on %s: steps %d to %d of batch %d",
        spec.model.kind,
        device,
        first_step,
        config.steps,
        config.batch_size,
    )

    log_every = max(1, config.steps // METRICS_PER_RUN)
    divergence = DivergenceWatch()
    model.train()
    for step in range(first_step, config.steps + 1):
        last_step = step == config.steps

        # Fetch a batch: (B, H, W, 3) numpy -> (B, 3, H, W) tensor on the device.
        # The contiguous NCHW copy is deliberate, because CPU convolutions ran
        # slower on the permuted (channels-last) view with torch 2.13.
        batch = data.batch(config.batch_size)
        images = torch.from_numpy(batch.images).to(device).permute(0, 3, 1, 2).contiguous()

        # One optimizer step. Its loss terms stay on the device until reported.
        losses = model.training_step(images)
        divergence.add(step, losses)
        for window in windows.values():
            window.add(losses)

        # Report mean losses since the previous report.
        if step % log_every == 0 or last_step:
            divergence.raise_if_diverged()
            callbacks.on_metrics(step, windows["metrics"].pop_means())

        # Sample, probe and report the generated distribution.
        snapshot_due = step % config.snapshot_every == 0 or last_step
        if snapshot_due:
            divergence.raise_if_diverged()
            snapshot = take_snapshot(
                model,
                data.family,
                spec.dataset,
                step,
                windows["snapshot"].pop_means(),
                config.samples_per_snapshot,
                sample_generator,
            )
            callbacks.on_snapshot(snapshot)

        # Checkpoint after the step's reports, so a resume at the next step repeats none.
        checkpointed = False
        if checkpoint_path is not None and (snapshot_due or step % config.checkpoint_every == 0):
            divergence.raise_if_diverged()
            _save(checkpoint_path, step, spec, model, data, sample_generator, windows)
            checkpointed = True

        # Let the caller cancel between steps; after the last step there is nothing to stop.
        if step < config.steps and callbacks.should_stop(step):
            if checkpoint_path is not None and not checkpointed:
                divergence.raise_if_diverged()
                _save(checkpoint_path, step, spec, model, data, sample_generator, windows)
            logger.info("training stopped on request after step %d of %d", step, config.steps)
            return TrainingOutcome(stopped=True, step=step)

    logger.info("training finished after %d steps", config.steps)
    return TrainingOutcome(stopped=False, step=config.steps)


def _save(
    path: Path,
    step: int,
    spec: RunSpec,
    model: GenerativeModel,
    data: TrainingSet,
    sample_generator: torch.Generator,
    windows: dict[str, LossAverager],
) -> None:
    checkpoint = Checkpoint(
        step=step,
        spec=spec.model_dump(mode="json"),
        model=model.state_dict(),
        random_state=capture_random_state(data, sample_generator),
        loss_windows={name: window.state_dict() for name, window in windows.items()},
    )
    save_checkpoint(path, checkpoint)
