"""The shapes dataset design: two coloured objects, some shape-colour combinations held out.

Each image shows a left and a right object. A combination is the pair of shapes
(left, right) together with the pair of colours (left, right). A design allows some shapes
and colours, and holds out combinations in two ways that may be mixed: `held_out` lists
combinations, and `restricted` allows a shape pair only with the colour pairs it lists.
Training images are drawn uniformly from the combinations that remain.
"""

from __future__ import annotations

import itertools
from typing import Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator

from biaslab.design.base import Strict, field_error

ShapeName = Literal["circle", "square", "triangle", "diamond", "cross", "star"]
ColourName = Literal["red", "green", "blue", "yellow", "magenta", "cyan"]
SHAPES: tuple[str, ...] = get_args(ShapeName)
COLOURS: tuple[str, ...] = get_args(ColourName)
# A combination as (left shape, right shape, left colour, right colour).
Combination = tuple[str, str, str, str]

MAX_COMBINATIONS = len(SHAPES) ** 2 * len(COLOURS) ** 2
MAX_SIZE_JITTER = 0.2
MAX_POSITION_JITTER = 0.05


class HeldOutCombination(Strict):
    """A shape pair and a colour pair that training images never show together."""

    shapes: tuple[ShapeName, ShapeName] = Field(description="The left and right shapes.")
    colours: tuple[ColourName, ColourName] = Field(description="The left and right colours.")


class RestrictedShapePair(Strict):
    """A shape pair that training images show only with the listed colour pairs."""

    shapes: tuple[ShapeName, ShapeName] = Field(description="The left and right shapes.")
    colours: list[tuple[ColourName, ColourName]] = Field(
        min_length=1,
        max_length=len(COLOURS) ** 2,
        description="The (left, right) colour pairs allowed with this shape pair.",
    )


class ShapesDataset(Strict):
    """Images of a left and a right object, each with a shape and a colour, on white."""

    family: Literal["shapes"] = "shapes"
    image_size: Literal[32, 64] = 32
    shapes: list[ShapeName] = Field(
        default=["circle", "square", "triangle"],
        min_length=1,
        max_length=len(SHAPES),
        description="Shapes that training objects may have.",
    )
    colours: list[ColourName] = Field(
        default=["red", "green", "blue"],
        min_length=1,
        max_length=len(COLOURS),
        description="Colours that training objects may have.",
    )
    held_out: list[HeldOutCombination] = Field(
        default=[],
        max_length=MAX_COMBINATIONS,
        description="Combinations of allowed shapes and colours left out of training.",
    )
    restricted: list[RestrictedShapePair] = Field(
        default=[],
        max_length=len(SHAPES) ** 2,
        description=(
            "Shape pairs allowed only with the colour pairs listed; "
            "their other colour pairs are held out."
        ),
    )
    noise: float = Field(default=0.03, ge=0, le=0.3, description="Gaussian pixel noise sigma.")
    size_jitter: float = Field(
        default=0.0,
        ge=0,
        le=MAX_SIZE_JITTER,
        description=(
            "Each object's size is drawn from 9 even steps between 1 - size_jitter and "
            "1 + size_jitter times the nominal size."
        ),
    )
    position_jitter: float = Field(
        default=0.0,
        ge=0,
        le=MAX_POSITION_JITTER,
        description=(
            "Each object's centre moves by whole pixels, up to this fraction of the image "
            "width horizontally and vertically."
        ),
    )
    training_images: int | None = Field(
        default=None,
        ge=64,
        # A fixed set is held in memory as float32: 50,000 images of 64x64 take 2.4 GB.
        le=50_000,
        description="Size of a fixed training set; fresh images every step when unset.",
    )

    @field_validator("shapes", "colours")
    @classmethod
    def _names_distinct(cls, names: list[str], info: ValidationInfo) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"{info.field_name} {names} repeat a value; list each name once")
        return names

    @field_validator("held_out")
    @classmethod
    def _held_out_allowed_and_distinct(
        cls, held_out: list[HeldOutCombination], info: ValidationInfo
    ) -> list[HeldOutCombination]:
        seen: dict[Combination, int] = {}
        for index, entry in enumerate(held_out):
            where = f"held_out[{index}]"
            _check_allowed(where, entry.shapes, entry.colours, info)
            key = (*entry.shapes, *entry.colours)
            if key in seen:
                raise ValueError(f"{where} repeats held_out[{seen[key]}]; list each one once")
            seen[key] = index
        return held_out

    @field_validator("restricted")
    @classmethod
    def _restricted_allowed_and_distinct(
        cls, restricted: list[RestrictedShapePair], info: ValidationInfo
    ) -> list[RestrictedShapePair]:
        seen: dict[tuple[str, str], int] = {}
        for index, entry in enumerate(restricted):
            where = f"restricted[{index}]"
            if entry.shapes in seen:
                raise ValueError(
                    f"{where} repeats the shape pair of restricted[{seen[entry.shapes]}]; "
                    "list each shape pair once with all its colour pairs"
                )
            seen[entry.shapes] = index
            if len(set(entry.colours)) != len(entry.colours):
                raise ValueError(f"{where}.colours repeat a colour pair; list each pair once")
            for colours in entry.colours:
                _check_allowed(where, entry.shapes, colours, info)
        return restricted

    @model_validator(mode="after")
    def _some_combination_remains(self) -> ShapesDataset:
        if not self.training_combinations():
            total = len(self.shapes) ** 2 * len(self.colours) ** 2
            # held_out is named unless restricted alone holds out everything.
            field = "held_out" if self.held_out or not self.restricted else "restricted"
            raise field_error(
                field,
                [entry.model_dump(mode="json") for entry in getattr(self, field)],
                "held_out and restricted hold out every combination of the allowed shapes "
                f"and colours ({total} in all); leave at least one for training",
            )
        return self

    def held_out_combinations(self) -> list[Combination]:
        """Return the held-out combinations, from `held_out` and `restricted`, in design order."""
        combinations: list[Combination] = [
            (*entry.shapes, *entry.colours) for entry in self.held_out
        ]
        for entry in self.restricted:
            allowed = set(entry.colours)
            left_shape, right_shape = entry.shapes
            for left_colour, right_colour in itertools.product(self.colours, repeat=2):
                if (left_colour, right_colour) not in allowed:
                    combinations.append((left_shape, right_shape, left_colour, right_colour))
        return list(dict.fromkeys(combinations))

    def training_combinations(self) -> list[Combination]:
        """Return the combinations that training images show, in design order."""
        held_out = set(self.held_out_combinations())
        return [
            (left_shape, right_shape, left_colour, right_colour)
            for left_shape, right_shape in itertools.product(self.shapes, repeat=2)
            for left_colour, right_colour in itertools.product(self.colours, repeat=2)
            if (left_shape, right_shape, left_colour, right_colour) not in held_out
        ]


def _check_allowed(
    where: str, shapes: tuple[str, str], colours: tuple[str, str], info: ValidationInfo
) -> None:
    """Raise ValueError when a shape or colour is not among the design's allowed ones."""
    # A field that failed its own validation is missing from info.data and already reported.
    for field, names in (("shapes", shapes), ("colours", colours)):
        allowed = info.data.get(field)
        if allowed is None:
            continue
        for name in names:
            if name not in allowed:
                raise ValueError(
                    f"{where} uses {field[:-1]} '{name}', which is not in {field} {allowed}; "
                    f"use only the design's {field}"
                )
