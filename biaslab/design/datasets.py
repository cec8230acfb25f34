"""Dataset designs: the training distribution of a study, one class per family."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from biaslab.design.base import Strict, StrictInteger, StrictNumber, field_error
from biaslab.design.combinations import CombinationsDataset
from biaslab.design.pie import PieDataset
from biaslab.design.shapes import ShapesDataset

MAX_DOTS = 16

# Every dot's radius, in every radius mode, lies in this range (fractions of the image width).
MIN_DOT_RADIUS = 0.04
MAX_DOT_RADIUS = 0.15
# The smallest gap between the edges of two dots, in radii (the mean radius of the two). With
# random colours, 0.1 is the gap that designs had before the gap was a field. Dots of one
# colour need wider gaps: two faint dots of one colour 0.1 radii apart merge for the dot
# counter (27% of renders of 1-12 dots unrecognized at 32x32), 0.5 radii apart they do not.
DEFAULT_MIN_SPACING = 0.1
SAME_COLOUR_MIN_SPACING = 0.5
MAX_MIN_SPACING = 4.0
# A palette colour must be at least this dark (1 minus the mean of its channels), like the
# palest random colour, so that the dot counter can tell it from the white background.
MIN_COLOUR_DARKNESS = 0.1
MAX_PALETTE_COLOURS = 16

RadiusMode = Literal["fixed", "constant_area", "range"]
ColourMode = Literal["random", "one", "palette"]
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """Convert "#rrggbb" to channel values in [0, 1]."""
    red, green, blue = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return red, green, blue


def _dots(count: int) -> str:
    return "1 dot" if count == 1 else f"{count} dots"


def constant_area_radius(dot_radius: float, reference_count: int, count: int) -> float:
    """Return the radius at which `count` dots cover the area of `reference_count` dots."""
    return dot_radius * math.sqrt(reference_count / count)


class DotsDataset(Strict):
    """Images of k non-overlapping coloured dots on a white background.

    Radius modes: "fixed" draws every dot with `dot_radius`. "constant_area" holds the total
    dot area of an image constant across counts: an image of k dots has radius
    dot_radius * sqrt(reference_count / k). So `dot_radius` is the radius at
    `reference_count` dots, and every image covers the area of that many dots of that
    radius. "range" draws each dot's radius uniformly from `radius_range` and ignores
    `dot_radius`. Colour modes: "random" draws each channel of each dot uniformly from
    [0, 0.9], "one" draws every dot in `colours[0]`, "palette" draws each dot's colour
    uniformly from `colours`.
    """

    family: Literal["dots"] = "dots"
    image_size: Literal[32, 64] = 32
    counts: list[Annotated[StrictInteger, Field(ge=1, le=MAX_DOTS)]] = Field(
        min_length=1, max_length=MAX_DOTS, description="Dot counts drawn in training images."
    )
    weights: list[Annotated[StrictNumber, Field(gt=0, le=1e6)]] | None = Field(
        default=None, description="Relative weight of each count; equal when unset."
    )
    noise: float = Field(default=0.03, ge=0, le=0.3, description="Gaussian pixel noise sigma.")
    radius_mode: RadiusMode = Field(
        default="fixed",
        description="fixed: every dot has dot_radius; constant_area: radius shrinks with the "
        "count so the total dot area stays constant; range: each radius drawn from radius_range.",
    )
    dot_radius: float = Field(
        default=0.08,
        ge=MIN_DOT_RADIUS,
        le=MAX_DOT_RADIUS,
        description="Dot radius as a fraction of the image width; with constant_area, the "
        "radius at reference_count dots. Unused with radius_mode range.",
    )
    reference_count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DOTS,
        description="With constant_area, the count whose dots have dot_radius; 1 when unset.",
    )
    radius_range: (
        tuple[
            Annotated[StrictNumber, Field(ge=MIN_DOT_RADIUS, le=MAX_DOT_RADIUS)],
            Annotated[StrictNumber, Field(ge=MIN_DOT_RADIUS, le=MAX_DOT_RADIUS)],
        ]
        | None
    ) = Field(
        default=None,
        description="With radius_mode range, the smallest and largest dot radius as fractions "
        "of the image width; each dot's radius is uniform in between.",
    )
    colour_mode: ColourMode = Field(
        default="random",
        description="random: each dot's channels uniform in [0, 0.9]; one: every dot in "
        "colours[0]; palette: each dot's colour drawn uniformly from colours.",
    )
    colours: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PALETTE_COLOURS,
        description="With colour_mode one (one colour) or palette (two or more), the dot "
        "colours as #rrggbb.",
    )
    min_spacing: float | None = Field(
        default=None,
        ge=DEFAULT_MIN_SPACING,
        le=MAX_MIN_SPACING,
        description="Smallest gap between the edges of two dots, in radii (the mean radius of "
        f"the two); {DEFAULT_MIN_SPACING} with random colours and {SAME_COLOUR_MIN_SPACING} "
        "with one colour or a palette when unset.",
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

    @field_validator("radius_range")
    @classmethod
    def _range_ascending(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(
                f"radius_range {list(bounds)} must list the smaller radius first and the two "
                "must differ; for one radius use radius_mode fixed"
            )
        return bounds

    @field_validator("colours")
    @classmethod
    def _colours_distinct_and_dark_enough(cls, colours: list[str] | None) -> list[str] | None:
        if colours is None:
            return None
        for colour in colours:
            if not _HEX_COLOUR.fullmatch(colour):
                raise ValueError(
                    f"colour {colour!r} is not a hex colour; write each colour as #rrggbb, "
                    "for example #1f77b4"
                )
        colours = [colour.lower() for colour in colours]
        if len(set(colours)) != len(colours):
            raise ValueError(f"colours {colours} repeat a colour; list each colour once")
        for colour in colours:
            darkness = 1 - sum(hex_to_rgb(colour)) / 3
            if darkness < MIN_COLOUR_DARKNESS:
                raise ValueError(
                    f"colour {colour} is too pale: it is {darkness:.3f} darker than white, and "
                    f"the dot counter needs at least {MIN_COLOUR_DARKNESS} (a mean channel "
                    f"value of at most {math.floor(255 * (1 - MIN_COLOUR_DARKNESS))} of 255)"
                )
        return colours

    @model_validator(mode="after")
    def _modes_consistent(self) -> DotsDataset:
        if (self.radius_mode == "range") != (self.radius_range is not None):
            raise field_error(
                "radius_range",
                self.radius_range,
                f"radius_range is {self.radius_range} with radius_mode {self.radius_mode}; "
                "set radius_range exactly when radius_mode is range",
            )
        if self.reference_count is not None and self.radius_mode != "constant_area":
            raise field_error(
                "reference_count",
                self.reference_count,
                f"reference_count {self.reference_count} is set with radius_mode "
                f"{self.radius_mode}; it is used only with radius_mode constant_area",
            )
        expected = {"random": "no colours", "one": "one colour", "palette": "two or more colours"}
        given = 0 if self.colours is None else len(self.colours)
        allowed = {"random": given == 0, "one": given == 1, "palette": given >= 2}
        if not allowed[self.colour_mode]:
            raise field_error(
                "colours",
                self.colours,
                f"colours has {given} entries with colour_mode {self.colour_mode}, which takes "
                f"{expected[self.colour_mode]}",
            )
        if self.colour_mode != "random" and self.spacing < SAME_COLOUR_MIN_SPACING:
            raise field_error(
                "min_spacing",
                self.spacing,
                f"min_spacing {self.spacing:g} is too small for colour_mode {self.colour_mode}: "
                "dots of one colour that nearly touch merge for the dot counter, so use a "
                f"min_spacing of at least {SAME_COLOUR_MIN_SPACING} radii",
            )
        return self

    @model_validator(mode="after")
    def _dots_fit_and_can_be_counted(self) -> DotsDataset:
        # Imported here because the renderer and the probe import this module.
        from biaslab.datasets.dots import check_counts_fit
        from biaslab.probes.count import MIN_RADIUS_PIXELS

        smallest, largest = self.radius_bounds()
        if self.radius_mode == "constant_area":
            small_dot = f"the dot radius with constant_area at {_dots(max(self.counts))}"
            large_dot = f"the dot radius with constant_area at {_dots(min(self.counts))}"
        elif self.radius_mode == "range":
            small_dot = large_dot = "the smaller radius_range bound"
        else:
            small_dot = large_dot = "dot_radius"
        # With radius_mode range the bounds carry their own limits, so only dot_radius gets here.
        if largest > MAX_DOT_RADIUS + 1e-12:
            raise field_error(
                "dot_radius",
                self.dot_radius,
                f"{large_dot} is {largest:.4f} of the width, above the largest allowed radius "
                f"{MAX_DOT_RADIUS}; use a smaller dot_radius or reference_count",
            )
        radius_pixels = smallest * self.image_size
        if radius_pixels < MIN_RADIUS_PIXELS:
            needed = MIN_RADIUS_PIXELS / self.image_size
            if self.radius_mode == "constant_area":
                fix = "a larger dot_radius or reference_count, smaller counts"
            elif self.radius_mode == "range":
                fix = "a larger lower bound"
            else:
                fix = "a larger dot_radius"
            field = "radius_range" if self.radius_mode == "range" else "dot_radius"
            raise field_error(
                field,
                getattr(self, field),
                f"{small_dot} is {smallest:.4f} of the width, {radius_pixels:.2f} px "
                f"at image_size {self.image_size}; the dot counter needs at least "
                f"{MIN_RADIUS_PIXELS} px ({needed:.3f} of the width), so use {fix} or a larger "
                "image_size",
            )
        try:
            check_counts_fit(counts=self.counts, **self.layout_arguments())
        except ValueError as error:
            raise field_error("counts", self.counts, str(error)) from error
        return self

    @property
    def spacing(self) -> float:
        """The smallest gap between dot edges in radii, with the colour mode's default applied."""
        if self.min_spacing is not None:
            return self.min_spacing
        return DEFAULT_MIN_SPACING if self.colour_mode == "random" else SAME_COLOUR_MIN_SPACING

    def radius_for_count(self, count: int) -> float:
        """Return the radius of every dot in an image of `count` dots (fixed and constant_area)."""
        if self.radius_mode == "range":
            raise ValueError("radius_mode range draws each dot's radius; use radius_bounds()")
        if self.radius_mode == "constant_area":
            return constant_area_radius(self.dot_radius, self.reference_count or 1, count)
        return self.dot_radius

    def radius_bounds(self) -> tuple[float, float]:
        """Return the smallest and largest dot radius of the design, as fractions of the width."""
        if self.radius_range is not None:
            return self.radius_range
        if self.radius_mode == "constant_area":
            return self.radius_for_count(max(self.counts)), self.radius_for_count(min(self.counts))
        return self.dot_radius, self.dot_radius

    def layout_arguments(self) -> dict[str, Any]:
        """Return the keyword arguments of the renderer's placement and fit functions."""
        return {
            "image_size": self.image_size,
            "dot_radius": self.dot_radius,
            "radius_mode": self.radius_mode,
            "radius_range": self.radius_range,
            "reference_count": self.reference_count or 1,
            "min_spacing": self.spacing,
        }

    def rgb_colours(self) -> list[tuple[float, float, float]] | None:
        """Return the colours as RGB in [0, 1], or None for random colours."""
        return None if self.colours is None else [hex_to_rgb(colour) for colour in self.colours]

    def count_probabilities(self) -> list[float]:
        weights = self.weights or [1.0] * len(self.counts)
        total = sum(weights)
        return [w / total for w in weights]


Dataset = Annotated[
    DotsDataset | ShapesDataset | PieDataset | CombinationsDataset, Field(discriminator="family")
]
DATASET_FAMILIES: tuple[str, ...] = ("dots", "shapes", "pie", "combinations")
