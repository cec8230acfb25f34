"""Dataset designs: the training distribution of a study, one class per family."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from biaslab.design.base import Strict

MAX_DOTS = 16


class DotsDataset(Strict):
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
