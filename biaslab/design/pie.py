"""The pie dataset design: one disc split into coloured wedges, its features on a 1-9 scale.

Every feature takes the values 1 to 9, linear in the quantity it sets, and 0 draws a value
from 1 to 9 uniformly for each image:

- size: the disc's radius, 0.40 (1) to 0.80 (9) of the half width;
- x and y: the offset of the disc's centre from the image centre, -0.2 (1) to +0.2 (9) of
  the half width, with x growing to the right and y downwards like image rows;
- red: the red wedge's share of the disc, 0.1 (1) to 0.9 (9).

`colours` sets how many colours the disc has. With 2 to 4 colours, red is one of them and
the rest of the disc is split into equal wedges of the other colours. With 1 colour the
disc is plain blue, the first colour after red, and a design's red values are null.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from biaslab.design.base import Strict, StrictInteger, StrictNumber

# Feature values: 1..9 set a quantity, and 0 draws one of 1..9 per image.
MIN_VALUE = 1
MAX_VALUE = 9
RANDOM_VALUE = 0
# The quantity that values 1 and 9 set.
SIZE_RANGE = (0.40, 0.80)  # radius, as a fraction of the half width
OFFSET_RANGE = (-0.2, 0.2)  # centre offset, as a fraction of the half width
RED_SHARE_RANGE = (0.1, 0.9)  # share of the disc's area
MAX_COLOURS = 4
MAX_PIE_VALUES = 100

PieValue = Annotated[StrictInteger, Field(ge=RANDOM_VALUE, le=MAX_VALUE)]
# (size, x, y, red); red is null for one-colour pies.
PieValues = tuple[PieValue, PieValue, PieValue, PieValue | None]


class PieImageSettings(Strict):
    """Settings that every pie image shares: size, noise, rotation and a fixed training set."""

    image_size: Literal[32, 64] = 32
    noise: float = Field(default=0.03, ge=0, le=0.3, description="Gaussian pixel noise sigma.")
    random_rotation: bool = Field(
        default=True,
        description=(
            "Start the wedges at a random angle in each image; false starts the first wedge "
            "(red when the pie has red) at 12 o'clock, with the wedges running clockwise."
        ),
    )
    training_images: int | None = Field(
        default=None,
        ge=64,
        # A fixed set is held in memory as float32: 50,000 images of 64x64 take 2.4 GB.
        le=50_000,
        description="Size of a fixed training set; fresh images every step when unset.",
    )


class PieDataset(PieImageSettings):
    """Images of one disc split into coloured wedges, drawn from listed feature values."""

    family: Literal["pie"] = "pie"
    colours: int = Field(
        default=2,
        ge=1,
        le=MAX_COLOURS,
        description=(
            "Colours in each disc. With 2-4, red is one of them and the others split the "
            "rest of the disc equally; with 1 the disc has no red."
        ),
    )
    values: list[PieValues] = Field(
        default=[(5, 5, 5, 5)],
        min_length=1,
        max_length=MAX_PIE_VALUES,
        description=(
            "Feature values (size, x, y, red) of training pies, each 1-9 or 0 for a value "
            "drawn per image; red is empty (null) when colours is 1."
        ),
    )
    weights: list[Annotated[StrictNumber, Field(gt=0, le=1e6)]] | None = Field(
        default=None, description="Relative weight of each entry of values; equal when unset."
    )

    @field_validator("values")
    @classmethod
    def _values_distinct_and_red_matches_colours(
        cls, values: list[PieValues], info: ValidationInfo
    ) -> list[PieValues]:
        if len(set(values)) != len(values):
            repeated = next(entry for entry in values if values.count(entry) > 1)
            raise ValueError(f"values lists {list(repeated)} more than once; list each once")
        colours = info.data.get("colours")
        if colours is None:
            return values
        for index, (_, _, _, red) in enumerate(values):
            if colours == 1 and red is not None:
                raise ValueError(
                    f"values[{index}] has red {red}, but a one-colour pie has no red wedge; "
                    "set red to null or colours to 2-4"
                )
            if colours > 1 and red is None:
                raise ValueError(
                    f"values[{index}] has no red value, but a pie of {colours} colours has a "
                    "red wedge; give red 1-9, or 0 for a share drawn per image"
                )
        return values

    @field_validator("weights")
    @classmethod
    def _one_weight_per_entry(
        cls, weights: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        values = info.data.get("values")
        if weights is not None and values is not None and len(weights) != len(values):
            raise ValueError(
                f"weights has {len(weights)} numbers but values has {len(values)} entries; "
                "give one weight per entry"
            )
        return weights

    def value_probabilities(self) -> list[float]:
        weights = self.weights or [1.0] * len(self.values)
        total = sum(weights)
        return [weight / total for weight in weights]
