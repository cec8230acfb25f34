"""The pie family: one disc split into coloured wedges, and the probe that reads it back.

Size, x, y and red share are reported on the 1-9 value scale of `biaslab.design.pie`, so
training and generated histograms share bins with the values a design lists. Probed values
are not rounded: a generated pie between two values lands in the bin of the nearest centre.

Size, x and y have one bin per value. The red share has a bin at every half value (1, 1.5,
2, ..., 9), steps of 0.05 in share, so that neighbouring trained shares such as 0.3 and 0.4
have a bin between them (3.5) in which the prototype-enhancement index counts samples. The
probe's red-share error on 32x32 renders reaches 0.035 in share, more than half a bin
(0.025), and docs/probe-pie.md gives the share of renders that land in a neighbouring bin.
"""

from __future__ import annotations

import numpy as np

from biaslab.datasets.pie import (
    draw_pie_values,
    render_pies,
    value_of_quantity,
)
from biaslab.design.pie import (
    MAX_COLOURS,
    MAX_VALUE,
    MIN_VALUE,
    OFFSET_RANGE,
    RED_SHARE_RANGE,
    SIZE_RANGE,
    PieDataset,
)
from biaslab.families.base import DatasetFamily, Feature, FeatureValues, RenderedBatch
from biaslab.probes.pie import read_pies

_VALUES = tuple(float(value) for value in range(MIN_VALUE, MAX_VALUE + 1))
_LABELS = tuple(str(value) for value in range(MIN_VALUE, MAX_VALUE + 1))
# 1, 1.5, 2, ..., 9, labelled "1", "1.5", "2", ..., "9".
_HALF_VALUES = tuple(MIN_VALUE + step / 2 for step in range(2 * (MAX_VALUE - MIN_VALUE) + 1))
_HALF_LABELS = tuple(f"{value:g}" for value in _HALF_VALUES)

SIZE_FEATURE = Feature(
    name="size",
    title="Size (radius: 1 = 0.40, 9 = 0.80 of the half width)",
    centres=_VALUES,
    labels=_LABELS,
)
X_FEATURE = Feature(
    name="x",
    title="x (centre offset: 1 = -0.2, 9 = +0.2 of the half width, rightwards)",
    centres=_VALUES,
    labels=_LABELS,
)
Y_FEATURE = Feature(
    name="y",
    title="y (centre offset: 1 = -0.2, 9 = +0.2 of the half width, downwards)",
    centres=_VALUES,
    labels=_LABELS,
)
RED_SHARE_FEATURE = Feature(
    name="red_share",
    title="Red share (1 = 0.1, 9 = 0.9 of the disc, bins of 0.05)",
    centres=_HALF_VALUES,
    labels=_HALF_LABELS,
)
COLOURS_FEATURE = Feature(
    name="colours",
    title="Number of colours",
    centres=tuple(float(count) for count in range(1, MAX_COLOURS + 1)),
    labels=tuple(str(count) for count in range(1, MAX_COLOURS + 1)),
)


def pie_features(has_red: bool) -> list[Feature]:
    """Return the pie features in display order; the red share only when the pies have red."""
    if has_red:
        return [SIZE_FEATURE, X_FEATURE, Y_FEATURE, RED_SHARE_FEATURE, COLOURS_FEATURE]
    return [SIZE_FEATURE, X_FEATURE, Y_FEATURE, COLOURS_FEATURE]


def true_features(values: np.ndarray, colours: int) -> FeatureValues:
    """Return the features of pies rendered from int (n, 4) values (size, x, y, red)."""
    features = {
        "size": values[:, 0].astype(np.float64),
        "x": values[:, 1].astype(np.float64),
        "y": values[:, 2].astype(np.float64),
    }
    if colours > 1:
        features["red_share"] = values[:, 3].astype(np.float64)
    features["colours"] = np.full(values.shape[0], float(colours))
    return features


def probe_pie_features(images: np.ndarray, has_red: bool) -> FeatureValues:
    """Read the pie features of (N, H, W, 3) images on the 1-9 scale; NaN where unreadable."""
    reading = read_pies(images)
    features = {
        "size": value_of_quantity(reading.size, SIZE_RANGE),
        "x": value_of_quantity(reading.x, OFFSET_RANGE),
        "y": value_of_quantity(reading.y, OFFSET_RANGE),
    }
    if has_red:
        features["red_share"] = value_of_quantity(reading.red_share, RED_SHARE_RANGE)
    features["colours"] = reading.colours
    return features


class PieFamily(DatasetFamily[PieDataset]):
    """Pies rendered by `biaslab.datasets.pie`, read by `biaslab.probes.pie`."""

    name = "pie"

    def features(self, design: PieDataset) -> list[Feature]:
        return pie_features(design.colours > 1)

    def render(self, design: PieDataset, n: int, rng: np.random.Generator) -> RenderedBatch:
        values = draw_pie_values(design, n, rng)
        images = render_pies(
            values,
            image_size=design.image_size,
            colours=design.colours,
            noise=design.noise,
            random_rotation=design.random_rotation,
            rng=rng,
        )
        return RenderedBatch(images=images, features=true_features(values, design.colours))

    def probe(self, images: np.ndarray, design: PieDataset) -> FeatureValues:
        return probe_pie_features(images, design.colours > 1)
