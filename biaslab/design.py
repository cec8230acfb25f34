"""Study designs: what a researcher submits, with the limits of every field.

A study names one dataset design, one model and one training recipe. `expand`
turns a study into the runs it makes. Each `RunSpec` is complete on its own,
so a run can be reproduced from its spec alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_DOTS = 16


class _Strict(BaseModel):
    # NaN and infinity would slip past range checks and break JSON responses.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DotsDataset(_Strict):
    """Images of k non-overlapping coloured dots on a white background."""

    family: Literal["dots"] = "dots"
    image_size: Literal[32, 64] = 32
    counts: list[Annotated[int, Field(ge=1, le=MAX_DOTS)]] = Field(
        min_length=1, max_length=MAX_DOTS, description="Dot counts drawn in training images."
    )
    weights: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        default=None, description="Relative weight of each count; equal when unset."
    )
    noise: float = Field(default=0.03, ge=0, le=0.3, description="Gaussian pixel noise sigma.")
    dot_radius: float = Field(
        default=0.08, ge=0.04, le=0.15, description="Dot radius as a fraction of the image width."
    )
    training_images: int | None = Field(
        default=None,
        ge=64,
        # A fixed set is held in memory as float32: 50,000 images of 64x64 take 2.4 GB.
        le=50_000,
        description="Size of a fixed training set; fresh images every step when unset.",
    )

    @field_validator("counts")
    @classmethod
    def _counts_distinct(cls, counts: list[int]) -> list[int]:
        if len(set(counts)) != len(counts):
            raise ValueError(f"counts {counts} repeat a value; list each count once")
        return counts

    @field_validator("weights")
    @classmethod
    def _one_weight_per_count(
        cls, weights: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        counts = info.data.get("counts")
        if weights is not None and counts is not None and len(weights) != len(counts):
            raise ValueError(
                f"weights has {len(weights)} values but counts has {len(counts)}; "
                "give one weight per count"
            )
        return weights

    @model_validator(mode="after")
    def _dots_fit_and_can_be_counted(self) -> DotsDataset:
        # Imported here because the renderer and the probe import this module.
        from biaslab.datasets.dots import check_counts_fit
        from biaslab.probes.count import MIN_RADIUS_PIXELS

        radius_pixels = self.dot_radius * self.image_size
        if radius_pixels < MIN_RADIUS_PIXELS:
            smallest = MIN_RADIUS_PIXELS / self.image_size
            raise ValueError(
                f"dot_radius {self.dot_radius:g} is {radius_pixels:.2f} px at image_size "
                f"{self.image_size}; the dot counter needs at least {MIN_RADIUS_PIXELS} px, "
                f"so use a dot_radius of at least {smallest:.3f} or a larger image_size"
            )
        check_counts_fit(counts=self.counts, image_size=self.image_size, dot_radius=self.dot_radius)
        return self

    def count_probabilities(self) -> list[float]:
        weights = self.weights or [1.0] * len(self.counts)
        total = sum(weights)
        return [w / total for w in weights]


Dataset = Annotated[DotsDataset, Field(discriminator="family")]
DATASET_FAMILIES: tuple[str, ...] = ("dots",)


class VaeModel(_Strict):
    """A variational autoencoder with a Gaussian latent and a sigmoid decoder."""

    kind: Literal["vae"] = "vae"
    architecture: Literal["conv"] = "conv"
    z_dim: int = Field(default=32, ge=2, le=512)
    beta: float = Field(default=1.0, ge=0, le=100)


Model = Annotated[VaeModel, Field(discriminator="kind")]
MODEL_KINDS: tuple[str, ...] = ("vae",)


class Training(_Strict):
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


class RunSpec(_Strict):
    """Everything one training run needs: what to draw, what to train, how."""

    dataset: Dataset
    model: Model
    training: Training


class StudyCreate(RunSpec):
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        # Control characters (NUL, newlines, escapes) have no place in a title.
        Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
    ]


def expand(study: StudyCreate) -> list[RunSpec]:
    """Return the runs of a study, in order."""
    return [RunSpec(dataset=study.dataset, model=study.model, training=study.training)]
