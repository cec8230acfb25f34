"""The shapes family: a left and a right coloured shape, some combinations held out of training.

Features hold indices into SHAPES and COLOURS, the probe's whole vocabulary, so the
histograms also show shapes and colours that the design does not allow. The scores are
how often generated samples show held-out combinations, and which ones appear.
"""

from __future__ import annotations

import numpy as np

from biaslab.datasets.shapes import render_shapes
from biaslab.design.shapes import COLOURS, SHAPES, Combination, ShapesDataset
from biaslab.families.base import DatasetFamily, Feature, FeatureValues, RenderedBatch
from biaslab.probes.shapes import read_objects


def _categorical(name: str, title: str, labels: tuple[str, ...]) -> Feature:
    return Feature(
        name=name,
        title=title,
        centres=tuple(float(index) for index in range(len(labels))),
        labels=labels,
        categorical=True,
    )


FEATURES = (
    _categorical("left_shape", "Left shape", SHAPES),
    _categorical("left_colour", "Left colour", COLOURS),
    _categorical("right_shape", "Right shape", SHAPES),
    _categorical("right_colour", "Right colour", COLOURS),
)
# Feature names in the order of a Combination: (left shape, right shape, left colour,
# right colour).
COMBINATION_FEATURES = ("left_shape", "right_shape", "left_colour", "right_colour")


def combination_codes(combinations: list[Combination]) -> np.ndarray:
    """Return one int64 code per combination of names, as `feature_codes` numbers them."""
    indices = np.array(
        [
            [
                SHAPES.index(left_shape),
                SHAPES.index(right_shape),
                COLOURS.index(left_colour),
                COLOURS.index(right_colour),
            ]
            for left_shape, right_shape, left_colour, right_colour in combinations
        ],
        dtype=np.int64,
    ).reshape(-1, 4)
    return _encode(indices)


def feature_codes(values: FeatureValues) -> np.ndarray:
    """Return each image's combination code, or -1 where any of its four features is NaN."""
    stacked = np.stack([np.asarray(values[name]) for name in COMBINATION_FEATURES], axis=1)
    recognized = ~np.isnan(stacked).any(axis=1)
    codes = _encode(np.where(recognized[:, None], stacked, 0).astype(np.int64))
    return np.where(recognized, codes, -1)


def _encode(indices: np.ndarray) -> np.ndarray:
    """Map (n, 4) indices (shape, shape, colour, colour) to distinct int64 codes."""
    shapes, colours = len(SHAPES), len(COLOURS)
    return ((indices[:, 0] * shapes + indices[:, 1]) * colours + indices[:, 2]) * colours + (
        indices[:, 3]
    )


def held_out_score_name(combination: Combination) -> str:
    """Return the score name of a held-out combination, such as held_out/circle-star/red-blue."""
    left_shape, right_shape, left_colour, right_colour = combination
    return f"held_out/{left_shape}-{right_shape}/{left_colour}-{right_colour}"


class ShapesFamily(DatasetFamily[ShapesDataset]):
    """Shapes rendered by `biaslab.datasets.shapes`, read by `biaslab.probes.shapes`."""

    name = "shapes"

    def features(self, design: ShapesDataset) -> list[Feature]:
        return list(FEATURES)

    def render(self, design: ShapesDataset, n: int, rng: np.random.Generator) -> RenderedBatch:
        batch = render_shapes(design, n, rng)
        return RenderedBatch(
            images=batch.images,
            features={
                "left_shape": batch.shapes[:, 0].astype(np.float64),
                "left_colour": batch.colours[:, 0].astype(np.float64),
                "right_shape": batch.shapes[:, 1].astype(np.float64),
                "right_colour": batch.colours[:, 1].astype(np.float64),
            },
        )

    def probe(self, images: np.ndarray, design: ShapesDataset) -> FeatureValues:
        """Read both objects; the probe ignores the design, so any image size works."""
        readings = read_objects(images)
        return {
            "left_shape": readings.shapes[:, 0],
            "left_colour": readings.colours[:, 0],
            "right_shape": readings.shapes[:, 1],
            "right_colour": readings.colours[:, 1],
        }

    def scores(self, design: ShapesDataset, probed: FeatureValues) -> dict[str, float]:
        """Return the shares of samples in training and in held-out combinations, and per
        held-out combination 1.0 when at least one sample shows it, else 0.0.

        Shares are of all samples, unrecognized ones included, and 0.0 for no samples.
        A sample counts in a combination only when all four of its features were read.
        """
        codes = feature_codes(probed)
        held_out = design.held_out_combinations()
        held_out_codes = combination_codes(held_out)
        training_codes = combination_codes(design.training_combinations())
        total = max(codes.size, 1)
        scores = {
            "training_share": float(np.isin(codes, training_codes).sum() / total),
            "held_out_share": float(np.isin(codes, held_out_codes).sum() / total),
        }
        generated = np.isin(held_out_codes, codes)
        for combination, seen in zip(held_out, generated, strict=True):
            scores[held_out_score_name(combination)] = 1.0 if seen else 0.0
        return scores
