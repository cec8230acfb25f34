"""The combinations dataset design: pies drawn from N seeded cells of a 4-D feature grid.

A cell is one combination of pie feature values (size, x, y, red), with size and red in
{1, 3, 5, 7, 9} and x and y in 1..9: 2,025 cells. A design draws N distinct cells with a
seed, optionally from the cells whose pinned feature takes listed values, and every
training image shows one of its cells, chosen uniformly.

The design stores only (combinations, selection_seed, pin), and `cells()` derives the
training cells from them deterministically. The draw ranks the candidate cells by the
SHA-256 digest of the seed and the cell and keeps the first N. It uses no numpy random
stream, because numpy promises the same stream only on the same numpy build and machine
(numpy.random's compatibility policy). So a RunSpec alone reproduces its training cells
anywhere. A larger N with the same seed and pin keeps every cell of a smaller one and adds
more.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from biaslab.design.base import Strict, StrictInteger
from biaslab.design.pie import MAX_COLOURS, PieImageSettings

# A cell as (size, x, y, red) feature values.
Cell = tuple[int, int, int, int]
CellFeature = Literal["size", "x", "y", "red"]
CELL_FEATURES: tuple[CellFeature, ...] = ("size", "x", "y", "red")
GRID: dict[str, tuple[int, ...]] = {
    "size": (1, 3, 5, 7, 9),
    "x": tuple(range(1, 10)),
    "y": tuple(range(1, 10)),
    "red": (1, 3, 5, 7, 9),
}
ALL_CELLS: tuple[Cell, ...] = tuple(
    (size, x, y, red)
    for size, x, y, red in itertools.product(*(GRID[name] for name in CELL_FEATURES))
)


class PinnedFeature(Strict):
    """One feature held to listed grid values in every training cell."""

    feature: CellFeature = Field(description="The feature to pin: size, x, y or red.")
    # Every feature's grid lies within 1 to 9.
    values: list[Annotated[StrictInteger, Field(ge=1, le=9)]] = Field(
        min_length=1, max_length=9, description="The grid values the pinned feature may take."
    )

    @field_validator("values")
    @classmethod
    def _values_on_grid(cls, values: list[int], info: ValidationInfo) -> list[int]:
        feature = info.data.get("feature")
        if len(set(values)) != len(values):
            raise ValueError(f"values {values} repeat a value; list each value once")
        if feature is None:
            return values
        allowed = GRID[feature]
        off_grid = [value for value in values if value not in allowed]
        if off_grid:
            raise ValueError(f"{feature} values must come from {list(allowed)}, got {off_grid}")
        return values


class CombinationsDataset(PieImageSettings):
    """Pie images whose (size, x, y, red) values come from N cells drawn with a seed."""

    family: Literal["combinations"] = "combinations"
    colours: int = Field(
        default=2,
        ge=2,
        le=MAX_COLOURS,
        description=(
            "Colours in each disc: red and 1-3 others that split the rest of the disc equally."
        ),
    )
    pin: PinnedFeature | None = Field(
        default=None,
        description="Restrict the draw to cells whose pinned feature takes the listed values.",
    )
    combinations: int = Field(
        default=10,
        ge=1,
        le=len(ALL_CELLS),
        description="Number N of distinct training cells (combinations of size, x, y, red).",
    )
    selection_seed: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Seed of the draw of training cells; the training seed does not change it.",
    )

    @field_validator("combinations")
    @classmethod
    def _enough_cells(cls, combinations: int, info: ValidationInfo) -> int:
        pin = info.data.get("pin")
        available = len(candidate_cells(pin))
        if combinations > available:
            where = f"cells have {pin.feature} in {pin.values}" if pin else "cells are in the grid"
            raise ValueError(
                f"only {available} {where}, so at most {available} combinations can be drawn; "
                f"use combinations of at most {available}"
            )
        return combinations

    def cells(self) -> tuple[Cell, ...]:
        """Return the N training cells, sorted by (size, x, y, red)."""
        pin_key = None if self.pin is None else (self.pin.feature, tuple(sorted(self.pin.values)))
        return _draw_cells(self.combinations, self.selection_seed, pin_key)


def candidate_cells(pin: PinnedFeature | None) -> tuple[Cell, ...]:
    """Return the grid cells that `pin` allows, in grid order."""
    if pin is None:
        return ALL_CELLS
    position = CELL_FEATURES.index(pin.feature)
    allowed = set(pin.values)
    return tuple(cell for cell in ALL_CELLS if cell[position] in allowed)


@functools.lru_cache(maxsize=128)
def _draw_cells(
    combinations: int, seed: int, pin: tuple[CellFeature, tuple[int, ...]] | None
) -> tuple[Cell, ...]:
    pinned = None if pin is None else PinnedFeature(feature=pin[0], values=list(pin[1]))
    ranked = sorted(candidate_cells(pinned), key=lambda cell: _rank(seed, cell))
    return tuple(sorted(ranked[:combinations]))


def _rank(seed: int, cell: Cell) -> bytes:
    text = f"{seed}:{cell[0]},{cell[1]},{cell[2]},{cell[3]}"
    return hashlib.sha256(text.encode("ascii")).digest()
