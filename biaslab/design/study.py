"""Studies and runs: a dataset design, a model and a training recipe.

`expand` turns a study into the runs it makes: one run without sweep axes, one
per combination of axis values with them (`biaslab.design.sweep`). Each
`RunSpec` is complete on its own, so a run can be reproduced from its spec alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from biaslab.design.base import Strict, StrictNumber, field_error
from biaslab.design.datasets import Dataset
from biaslab.design.models import Model
from biaslab.design.sweep import MAX_AXES, ExpandedRun, SweepAxis, check_axes, expand_sweep

AdamBeta = Annotated[StrictNumber, Field(ge=0, lt=1)]


class Training(Strict):
    steps: int = Field(default=3000, ge=1, le=1_000_000)
    batch_size: int = Field(default=64, ge=1, le=1024)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    snapshot_every: int = Field(default=250, ge=1, le=1_000_000)
    samples_per_snapshot: int = Field(default=1000, ge=64, le=10_000)
    checkpoint_every: int = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description=(
            "Steps between checkpoints. A checkpoint is also written at every snapshot "
            "and when a run stops early, and a resent run resumes from the latest one."
        ),
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    adam_betas: tuple[AdamBeta, AdamBeta] | None = Field(
        default=None,
        description="Adam's (beta1, beta2), or the model's default when empty (null).",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        title="Learning-rate schedule",
        description="Learning rate over the run: constant, or cosine decay to zero.",
    )
    warmup_steps: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Steps over which the learning rate rises linearly from zero.",
    )
    device: Literal["cpu", "gpu"] = Field(
        default="cpu",
        description=(
            "The queue the run waits on: cpu, or gpu for the workers started with "
            "`biaslab worker --queues gpu`."
        ),
    )

    @field_validator("snapshot_every")
    @classmethod
    def _snapshot_within_steps(cls, snapshot_every: int, info: ValidationInfo) -> int:
        steps = info.data.get("steps")
        if steps is not None and snapshot_every > steps:
            raise ValueError(
                f"snapshot_every {snapshot_every} is larger than steps {steps}; "
                "use at most the number of steps"
            )
        return snapshot_every


class RunSpec(Strict):
    """Everything one training run needs: what to draw, what to train, how."""

    dataset: Dataset
    model: Model
    training: Training

    @model_validator(mode="after")
    def _batch_feeds_every_critic_step(self) -> RunSpec:
        # A WGAN-GP step splits the batch's real images over its critic updates.
        critic_steps = getattr(self.model, "critic_steps", None)
        if critic_steps is not None and self.training.batch_size < critic_steps:
            raise field_error(
                "training.batch_size",
                self.training.batch_size,
                f"batch_size {self.training.batch_size} is smaller than critic_steps "
                f"{critic_steps}; each critic step needs at least one real image, so use a "
                f"batch_size of at least {critic_steps}",
            )
        return self


class StudyCreate(RunSpec):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        # Control characters (NUL, newlines, escapes) have no place in a title.
        Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
    ]
    sweep: list[SweepAxis] = Field(
        default=[],
        max_length=MAX_AXES,
        description=(
            "Axes whose values the runs of the study take, one run per combination; "
            "no axes make one run."
        ),
    )

    @field_validator("sweep")
    @classmethod
    def _sweep_makes_valid_runs(
        cls, sweep: list[SweepAxis], info: ValidationInfo
    ) -> list[SweepAxis]:
        check_axes(sweep)
        dataset, model, training = (
            info.data.get(part) for part in ("dataset", "model", "training")
        )
        # A part that failed its own validation is missing here and already reported.
        if sweep and dataset is not None and model is not None and training is not None:
            base = RunSpec(dataset=dataset, model=model, training=training)
            expand_sweep(base, sweep, RunSpec.model_validate)
        return sweep

    def base_run(self) -> RunSpec:
        """Return the run spec that the sweep axes start from."""
        return RunSpec(dataset=self.dataset, model=self.model, training=self.training)


def expand_runs(study: StudyCreate) -> list[ExpandedRun[RunSpec]]:
    """Return the runs of a study in order, each with its spec and its axis values."""
    return expand_sweep(study.base_run(), study.sweep, RunSpec.model_validate)


def expand(study: StudyCreate) -> list[RunSpec]:
    """Return the run specs of a study, in order."""
    return [run.spec for run in expand_runs(study)]
