"""The shapes family: features, render and probe through the interface, held-out scores."""

from __future__ import annotations

import math

import numpy as np

from biaslab.design.shapes import COLOURS, SHAPES, ShapesDataset
from biaslab.families import FAMILIES, family_for
from biaslab.families.shapes import ShapesFamily

NAN = math.nan
DESIGN = ShapesDataset(
    shapes=["circle", "square", "star"],
    colours=["red", "blue"],
    held_out=[
        {"shapes": ["circle", "square"], "colours": ["red", "blue"]},
        {"shapes": ["square", "circle"], "colours": ["blue", "red"]},
    ],
)


def probed(rows: list[tuple[str | float, str | float, str | float, str | float]]) -> dict:
    """Build probe output from rows of (left shape, right shape, left colour, right colour)."""

    def index(names: tuple[str, ...], value: str | float) -> float:
        return float(names.index(value)) if isinstance(value, str) else value

    return {
        "left_shape": np.array([index(SHAPES, row[0]) for row in rows]),
        "right_shape": np.array([index(SHAPES, row[1]) for row in rows]),
        "left_colour": np.array([index(COLOURS, row[2]) for row in rows]),
        "right_colour": np.array([index(COLOURS, row[3]) for row in rows]),
    }


def test_shapes_family_registered():
    assert isinstance(FAMILIES["shapes"], ShapesFamily)
    assert family_for(DESIGN) is FAMILIES["shapes"]


def test_features_are_categorical_over_every_name():
    features = ShapesFamily().features(DESIGN)
    assert [feature.name for feature in features] == [
        "left_shape",
        "left_colour",
        "right_shape",
        "right_colour",
    ]
    for feature in features:
        assert feature.categorical, f"{feature.name} should be categorical"
        expected = SHAPES if feature.name.endswith("shape") else COLOURS
        assert feature.labels == expected, f"{feature.name} labels {feature.labels}"


def test_probe_reads_back_rendered_features():
    family = ShapesFamily()
    batch = family.render(DESIGN, 400, np.random.default_rng(0))
    assert set(batch.features) == {"left_shape", "left_colour", "right_shape", "right_colour"}
    values = family.probe(batch.images, DESIGN)
    for name, truth in batch.features.items():
        assert truth.dtype == np.float64, f"{name} dtype {truth.dtype}"
        agreement = (values[name] == truth).mean()
        assert agreement >= 0.99, f"{name}: probe agrees with the renderer on {agreement:.3f}"


def test_render_features_never_held_out():
    family = ShapesFamily()
    batch = family.render(DESIGN, 3000, np.random.default_rng(1))
    scores = family.scores(DESIGN, batch.features)
    assert scores["held_out_share"] == 0.0, f"held-out share of training renders {scores}"
    assert scores["training_share"] == 1.0, f"training share of training renders {scores}"


def test_scores_count_held_out_generations():
    rows = [
        ("circle", "square", "red", "blue"),  # held out
        ("circle", "square", "red", "blue"),  # held out
        ("circle", "square", "red", "blue"),  # held out
        ("square", "circle", "red", "blue"),  # training: the colour pair is the other way
        ("circle", "circle", "blue", "blue"),  # training
        ("star", "square", "red", "red"),  # training
        ("triangle", "square", "red", "blue"),  # triangles are not in the design
        ("circle", "square", "red", NAN),  # unrecognized: no combination
        (NAN, NAN, NAN, NAN),  # unrecognized
        ("circle", "square", "green", "blue"),  # green is not in the design
    ]
    scores = ShapesFamily().scores(DESIGN, probed(rows))
    assert scores == {
        "training_share": 0.3,
        "held_out_share": 0.3,
        "held_out/circle-square/red-blue": 1.0,
        "held_out/square-circle/blue-red": 0.0,
    }


def test_scores_of_restricted_pairs():
    design = ShapesDataset(
        shapes=["circle"],
        colours=["red", "blue"],
        restricted=[{"shapes": ["circle", "circle"], "colours": [["red", "red"]]}],
    )
    family = ShapesFamily()
    # No samples: every score is still a finite number.
    empty = family.scores(design, probed([]))
    assert empty == {
        "training_share": 0.0,
        "held_out_share": 0.0,
        "held_out/circle-circle/red-blue": 0.0,
        "held_out/circle-circle/blue-red": 0.0,
        "held_out/circle-circle/blue-blue": 0.0,
    }
    scores = family.scores(design, probed([("circle", "circle", "blue", "red")] * 4))
    assert scores["held_out_share"] == 1.0
    assert scores["held_out/circle-circle/blue-red"] == 1.0
    assert scores["held_out/circle-circle/blue-blue"] == 0.0
    assert all(math.isfinite(value) for value in scores.values())


def test_histograms_and_descriptions_use_names():
    family = ShapesFamily()
    values = probed([("star", "circle", "blue", "red"), (NAN, "square", NAN, "blue")])
    histograms = family.histograms(DESIGN, values)
    assert histograms["left_shape"].counts == [0, 0, 0, 0, 0, 1]
    assert histograms["left_shape"].unrecognized == 1
    assert histograms["right_colour"].labels == list(COLOURS)
    assert family.describe(DESIGN, values) == [
        {
            "left_shape": "star",
            "left_colour": "blue",
            "right_shape": "circle",
            "right_colour": "red",
        },
        {"left_shape": None, "left_colour": None, "right_shape": "square", "right_colour": "blue"},
    ]
