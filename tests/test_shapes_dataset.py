"""The shapes design and renderer: validation, held-out combinations, pixels and determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from backend.errors import describe_error
from biaslab.datasets.shapes import (
    COLOUR_RGB,
    coverage_masks,
    render_objects,
    render_shapes,
)
from biaslab.design import StudyCreate
from biaslab.design.shapes import COLOURS, SHAPES, ShapesDataset


def shapes_study(**dataset: object) -> dict:
    return {
        "name": "shapes",
        "dataset": {"family": "shapes", **dataset},
        "model": {"kind": "vae"},
        "training": {},
    }


def messages(**dataset: object) -> list[str]:
    """Return the 422 messages that the API would send for a shapes design."""
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(shapes_study(**dataset))
    return [describe_error(error)["message"] for error in caught.value.errors()]


def drawn_combinations(design: ShapesDataset, n: int, seed: int) -> set[tuple[str, ...]]:
    batch = render_shapes(design, n, np.random.default_rng(seed))
    return {
        (SHAPES[left], SHAPES[right], COLOURS[left_colour], COLOURS[right_colour])
        for (left, right), (left_colour, right_colour) in zip(
            batch.shapes.tolist(), batch.colours.tolist(), strict=True
        )
    }


# Design validation


def test_shapes_study_accepted_with_defaults():
    study = StudyCreate.model_validate(shapes_study())
    assert isinstance(study.dataset, ShapesDataset)
    assert study.dataset.shapes == ["circle", "square", "triangle"]
    assert study.dataset.colours == ["red", "green", "blue"]
    assert len(study.dataset.training_combinations()) == 81, "3 x 3 shape pairs x 3 x 3 colours"


def test_unknown_shape_names_value_and_allowed_set():
    [message] = messages(shapes=["circle", "hexagon"])
    assert message.startswith("dataset.shapes[1]: 'hexagon' is invalid"), message
    for name in SHAPES:
        assert f"'{name}'" in message, f"{name} missing from {message}"


def test_unknown_colour_in_held_out_names_allowed_set():
    [message] = messages(held_out=[{"shapes": ["circle", "square"], "colours": ["red", "purple"]}])
    assert message.startswith("dataset.held_out[0].colours[1]: 'purple' is invalid"), message
    for name in COLOURS:
        assert f"'{name}'" in message, f"{name} missing from {message}"


def test_held_out_outside_allowed_shapes_rejected():
    [message] = messages(held_out=[{"shapes": ["circle", "star"], "colours": ["red", "blue"]}])
    assert message.startswith("dataset.held_out: "), message
    assert "held_out[0] uses shape 'star'" in message, message
    assert "['circle', 'square', 'triangle']" in message, message


def test_restricted_outside_allowed_colours_rejected():
    [message] = messages(
        restricted=[{"shapes": ["circle", "square"], "colours": [["red", "yellow"]]}]
    )
    assert "restricted[0] uses colour 'yellow'" in message, message
    assert "['red', 'green', 'blue']" in message, message


def test_nothing_left_for_training_rejected():
    [message] = messages(
        shapes=["circle"],
        colours=["red", "blue"],
        restricted=[{"shapes": ["circle", "circle"], "colours": [["red", "blue"]]}],
        held_out=[{"shapes": ["circle", "circle"], "colours": ["red", "blue"]}],
    )
    assert "hold out every combination" in message, message
    assert "(4 in all)" in message, message


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"shapes": ["circle", "circle"]}, "repeat a value"),
        ({"colours": ["red", "blue", "red"]}, "repeat a value"),
        (
            {"held_out": [{"shapes": ["circle", "square"], "colours": ["red", "blue"]}] * 2},
            "held_out[1] repeats held_out[0]",
        ),
        (
            {
                "restricted": [
                    {"shapes": ["circle", "square"], "colours": [["red", "blue"]]},
                    {"shapes": ["circle", "square"], "colours": [["blue", "red"]]},
                ]
            },
            "restricted[1] repeats the shape pair of restricted[0]",
        ),
        (
            {"restricted": [{"shapes": ["circle", "square"], "colours": [["red", "blue"]] * 2}]},
            "restricted[0].colours repeat a colour pair",
        ),
        ({"restricted": [{"shapes": ["circle", "square"], "colours": []}]}, "at least 1 item"),
        ({"size_jitter": 0.3}, "less than or equal to 0.2"),
        ({"position_jitter": 0.1}, "less than or equal to 0.05"),
        ({"image_size": 48}, "32 or 64"),
        ({"noise": -0.1}, "greater than or equal to 0"),
    ],
)
def test_invalid_design_rejected(dataset, expected):
    found = messages(**dataset)
    assert any(expected in message for message in found), f"{expected!r} not in {found}"


def test_restricted_holds_out_unlisted_colour_pairs():
    design = ShapesDataset(
        shapes=["circle", "square"],
        colours=["red", "blue"],
        restricted=[{"shapes": ["circle", "square"], "colours": [["red", "blue"]]}],
        held_out=[{"shapes": ["square", "square"], "colours": ["red", "red"]}],
    )
    assert design.held_out_combinations() == [
        ("square", "square", "red", "red"),
        ("circle", "square", "red", "red"),
        ("circle", "square", "blue", "red"),
        ("circle", "square", "blue", "blue"),
    ]
    assert len(design.training_combinations()) == 16 - 4
    assert ("circle", "square", "red", "blue") in design.training_combinations()


def test_overlapping_held_out_and_restricted_counted_once():
    design = ShapesDataset(
        shapes=["circle"],
        colours=["red", "blue"],
        restricted=[{"shapes": ["circle", "circle"], "colours": [["red", "red"]]}],
        held_out=[{"shapes": ["circle", "circle"], "colours": ["blue", "blue"]}],
    )
    assert sorted(design.held_out_combinations()) == [
        ("circle", "circle", "blue", "blue"),
        ("circle", "circle", "blue", "red"),
        ("circle", "circle", "red", "blue"),
    ]
    assert design.training_combinations() == [("circle", "circle", "red", "red")]


# Held-out combinations in training renders


def test_held_out_combinations_never_rendered():
    design = ShapesDataset(
        shapes=["circle", "square", "star"],
        colours=["red", "blue"],
        held_out=[
            {"shapes": ["circle", "square"], "colours": ["red", "blue"]},
            {"shapes": ["star", "star"], "colours": ["blue", "blue"]},
        ],
        restricted=[{"shapes": ["square", "circle"], "colours": [["red", "red"]]}],
    )
    drawn = drawn_combinations(design, 6000, seed=0)
    held_out = set(design.held_out_combinations())
    assert len(held_out) == 5, f"held-out combinations {sorted(held_out)}"
    assert drawn.isdisjoint(held_out), f"held out but rendered: {sorted(drawn & held_out)}"
    # 31 training combinations, each drawn with probability 1/31 per image: all appear.
    assert drawn == set(design.training_combinations()), "some training combinations never drawn"


def test_training_combinations_equally_likely():
    design = ShapesDataset(shapes=["circle", "cross"], colours=["green"])
    batch = render_shapes(design, 8000, np.random.default_rng(3))
    pairs = batch.shapes[:, 0] * len(SHAPES) + batch.shapes[:, 1]
    counts = np.unique(pairs, return_counts=True)[1]
    assert counts.size == 4, f"shape pairs drawn: {np.unique(pairs)}"
    # 2,000 expected per pair; 5 standard deviations of a binomial are 194.
    assert np.all(np.abs(counts - 2000) < 194), f"counts per shape pair {counts}"
    assert set(batch.colours.reshape(-1).tolist()) == {COLOURS.index("green")}


# Pixels


@pytest.mark.parametrize("image_size", [32, 64])
def test_render_shape_dtype_and_range(image_size):
    design = ShapesDataset(image_size=image_size, noise=0.1, size_jitter=0.2, position_jitter=0.05)
    batch = render_shapes(design, 300, np.random.default_rng(0))
    assert batch.images.shape == (300, image_size, image_size, 3), f"shape {batch.images.shape}"
    assert batch.images.dtype == np.float32, f"dtype {batch.images.dtype}"
    assert batch.images.min() >= 0.0, f"minimum {batch.images.min()}"
    assert batch.images.max() <= 1.0, f"maximum {batch.images.max()}"
    assert batch.shapes.shape == (300, 2), f"shapes {batch.shapes.shape}"
    assert batch.colours.shape == (300, 2), f"colours {batch.colours.shape}"


def test_same_seed_gives_same_images():
    design = ShapesDataset(image_size=64, noise=0.03, size_jitter=0.1, position_jitter=0.03)
    first = render_shapes(design, 300, np.random.default_rng(7))
    second = render_shapes(design, 300, np.random.default_rng(7))
    other = render_shapes(design, 300, np.random.default_rng(8))
    assert np.array_equal(first.images, second.images), "images differ for the same seed"
    assert np.array_equal(first.shapes, second.shapes), "shapes differ for the same seed"
    assert np.array_equal(first.colours, second.colours), "colours differ for the same seed"
    assert not np.array_equal(first.images, other.images), "another seed gave the same images"


@pytest.mark.parametrize("image_size", [32, 64])
def test_noise_free_pixels_are_masks_times_ink(image_size):
    """Without jitter, each half is white minus its shape's mask times its colour's ink."""
    every = np.array(list(itertools.product(range(len(SHAPES)), repeat=2)))
    shapes = every
    colours = np.stack([every[:, 1], every[:, 0]], axis=1)  # a colour pair per row as well
    images = render_objects(
        shapes, colours, image_size=image_size, noise=0.0, rng=np.random.default_rng(0)
    )
    masks = coverage_masks(image_size, 0.0)[:, 0]
    patch = masks.shape[-1]
    for index in range(len(every)):
        expected = np.ones((image_size, image_size, 3), dtype=np.float32)
        for side, centre_x in enumerate((image_size // 4, 3 * image_size // 4)):
            top, left = image_size // 2 - patch // 2, centre_x - patch // 2
            ink = 1.0 - COLOUR_RGB[colours[index, side]]
            expected[top : top + patch, left : left + patch] -= (
                masks[shapes[index, side], :, :, None] * ink
            )
        difference = np.abs(images[index] - expected).max()
        assert difference < 1e-6, f"image {index} differs from its masks by {difference}"


def test_masks_have_the_shapes_areas():
    """Each mask's coverage adds up to its shape's area at the nominal radius.

    Sampling 8 x 8 points per pixel places an edge within 1/16 of a pixel, so a square
    17.4 pixels wide can cover 17.5^2 pixels: 1.1% more than its area.
    """
    masks = coverage_masks(64, 0.0)[:, 0]
    radius = 0.16 * 64
    areas = {"circle": np.pi, "square": 1.7**2, "triangle": 1.8, "diamond": 2.0, "cross": 1.8}
    for name, area in areas.items():
        covered = masks[SHAPES.index(name)].sum()
        assert covered == pytest.approx(area * radius**2, rel=0.02), f"{name} covers {covered}"


def test_objects_stay_in_their_half_at_largest_jitter():
    n = 400
    rng = np.random.default_rng(5)
    shapes = rng.integers(0, len(SHAPES), size=(n, 2))
    # Red on the left, green on the right: only red ink darkens the green channel, and only
    # green ink darkens the red channel.
    colours = np.tile([COLOURS.index("red"), COLOURS.index("green")], (n, 1))
    for image_size in (32, 64):
        images = render_objects(
            shapes,
            colours,
            image_size=image_size,
            noise=0.0,
            size_jitter=0.2,
            position_jitter=0.05,
            rng=rng,
        )
        half = image_size // 2
        assert images[:, :, half:, 1].min() == 1.0, "red ink reached the right half"
        assert images[:, :, :half, 0].min() == 1.0, "green ink reached the left half"
        assert images[:, :, :half, 1].min() < 0.01, "a left object is missing"


def test_jitter_moves_and_resizes_objects():
    n = 200
    shapes = np.zeros((n, 2), dtype=np.int64)  # circles
    colours = np.zeros((n, 2), dtype=np.int64)
    still = render_objects(shapes, colours, image_size=64, noise=0.0, rng=np.random.default_rng(1))
    moved = render_objects(
        shapes,
        colours,
        image_size=64,
        noise=0.0,
        size_jitter=0.2,
        position_jitter=0.05,
        rng=np.random.default_rng(1),
    )
    still_areas = (1 - still[:, :, :32, 1]).sum(axis=(1, 2))
    moved_areas = (1 - moved[:, :, :32, 1]).sum(axis=(1, 2))
    assert np.ptp(still_areas) < 1e-3, "objects without jitter should all be the same size"
    ratio = moved_areas / still_areas[0]
    assert ratio.min() < 0.7, f"smallest area ratio {ratio.min()}, expected 0.8^2"
    assert ratio.max() > 1.35, f"largest area ratio {ratio.max()}, expected 1.2^2"
    assert np.unique(np.round(ratio, 3)).size == 9, "size jitter has 9 levels"
    darkest_rows = (1 - moved[:, :, :32, 1]).sum(axis=2).argmax(axis=1)
    assert np.unique(darkest_rows).size > 3, "position jitter should move objects vertically"


def test_render_arguments_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shapes must be indices in 0..5"):
        render_objects(np.array([[0, 6]]), np.array([[0, 0]]), image_size=32, noise=0, rng=rng)
    with pytest.raises(ValueError, match="colours must have shape"):
        render_objects(np.array([[0, 1]]), np.array([0, 0]), image_size=32, noise=0, rng=rng)
    with pytest.raises(ValueError, match="image_size must be 32 or 64"):
        render_objects(np.array([[0, 1]]), np.array([[0, 0]]), image_size=48, noise=0, rng=rng)
