"""The pie design, renderer and family: limits, determinism, geometry, true features."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

import biaslab.datasets.pie as pie_renderer
from biaslab.datasets.pie import (
    PALETTE,
    draw_pie_values,
    quantity_of_value,
    render_pies,
    value_of_quantity,
    wedge_colours,
)
from biaslab.design import StudyCreate
from biaslab.design.pie import OFFSET_RANGE, RED_SHARE_RANGE, SIZE_RANGE, PieDataset
from biaslab.families import family_for
from biaslab.families.pie import PieFamily
from biaslab.families.training_set import TrainingSet
from tests.examples import EXAMPLE_STUDY


def render(values, *, image_size=64, colours=2, noise=0.0, random_rotation=True, seed=0):
    return render_pies(
        np.asarray(values, dtype=np.int64),
        image_size=image_size,
        colours=colours,
        noise=noise,
        random_rotation=random_rotation,
        rng=np.random.default_rng(seed),
    )


def coverage_of(images: np.ndarray) -> np.ndarray:
    """Return each noise-free pixel's disc coverage: every palette colour has ink 0.9."""
    return (1.0 - images.min(axis=3)) / 0.9


# Design


def test_default_design_is_valid():
    design = PieDataset()
    assert design.values == [(5, 5, 5, 5)]
    assert design.colours == 2
    assert design.value_probabilities() == [1.0]


def test_study_with_pie_dataset_validates():
    body = {**EXAMPLE_STUDY, "dataset": {"family": "pie", "values": [[5, 5, 5, 3], [5, 5, 5, 7]]}}
    study = StudyCreate.model_validate(body)
    assert isinstance(study.dataset, PieDataset)
    assert study.dataset.values == [(5, 5, 5, 3), (5, 5, 5, 7)]


def test_weights_normalized():
    design = PieDataset(values=[(1, 1, 1, 1), (9, 9, 9, 9)], weights=[3, 1])
    assert design.value_probabilities() == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"values": [(10, 5, 5, 5)]}, ("values", 0, 0), "less than or equal to 9"),
        ({"values": [(5, -1, 5, 5)]}, ("values", 0, 1), "greater than or equal to 0"),
        ({"values": []}, ("values",), "at least 1 item"),
        ({"values": [(5, 5, 5, 3)] * 2}, ("values",), "lists [5, 5, 5, 3] more than once"),
        ({"colours": 1, "values": [(5, 5, 5, 3)]}, ("values",), "set red to null or colours"),
        ({"colours": 3, "values": [(5, 5, 5, None)]}, ("values",), "give red 1-9, or 0"),
        ({"values": [(5, 5, 5, 5)], "weights": [1, 2]}, ("weights",), "one weight per entry"),
        ({"colours": 5}, ("colours",), "less than or equal to 4"),
        ({"image_size": 48}, ("image_size",), "32 or 64"),
        ({"noise": 0.5}, ("noise",), "less than or equal to 0.3"),
    ],
)
def test_invalid_design_rejected(fields, location, message):
    with pytest.raises(ValidationError) as caught:
        PieDataset(**fields)
    errors = caught.value.errors()
    assert [error["loc"] for error in errors] == [location], f"errors {errors}"
    assert message in errors[0]["msg"], f"message {errors[0]['msg']!r}"


def test_one_colour_design_takes_null_red():
    design = PieDataset(colours=1, values=[(5, 5, 5, None)])
    assert design.values == [(5, 5, 5, None)]


# Feature values


def test_values_map_linearly_onto_ranges():
    values = np.arange(1, 10)
    assert quantity_of_value(values, SIZE_RANGE) == pytest.approx(np.linspace(0.4, 0.8, 9))
    assert quantity_of_value(values, OFFSET_RANGE) == pytest.approx(np.linspace(-0.2, 0.2, 9))
    assert quantity_of_value(values, RED_SHARE_RANGE) == pytest.approx(np.linspace(0.1, 0.9, 9))
    back = value_of_quantity(quantity_of_value(values, SIZE_RANGE), SIZE_RANGE)
    assert back == pytest.approx(values)


def test_drawn_values_follow_entries_and_weights():
    design = PieDataset(values=[(1, 2, 3, 4), (9, 8, 7, 6)], weights=[1, 3])
    values = draw_pie_values(design, 8000, np.random.default_rng(0))
    assert values.dtype == np.int64
    first = (values == [1, 2, 3, 4]).all(axis=1)
    second = (values == [9, 8, 7, 6]).all(axis=1)
    assert (first | second).all(), "a drawn row matches neither entry"
    assert second.mean() == pytest.approx(0.75, abs=0.02), f"share of the second {second.mean()}"


def test_random_values_uniform_over_one_to_nine():
    design = PieDataset(values=[(0, 5, 0, 0)])
    values = draw_pie_values(design, 9000, np.random.default_rng(1))
    assert (values[:, 1] == 5).all(), "a fixed value changed"
    for column in (0, 2, 3):
        counts = np.bincount(values[:, column], minlength=10)
        assert counts[0] == 0, f"column {column} kept a 0"
        p_value = stats.chisquare(counts[1:]).pvalue
        assert p_value > 0.001, f"column {column}: counts {counts[1:]} are not uniform"


def test_one_colour_values_have_no_red():
    design = PieDataset(colours=1, values=[(0, 0, 0, None)])
    values = draw_pie_values(design, 100, np.random.default_rng(2))
    assert (values[:, 3] == 0).all(), "one-colour pies got a red value"


# Renderer


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_render_shape_dtype_and_range(image_size, noise):
    values = np.random.default_rng(3).integers(1, 10, size=(40, 4))
    images = render(values, image_size=image_size, noise=noise, colours=4)
    assert images.shape == (40, image_size, image_size, 3), f"shape {images.shape}"
    assert images.dtype == np.float32, f"dtype {images.dtype}"
    assert images.min() >= 0.0, f"minimum {images.min()}"
    assert images.max() <= 1.0, f"maximum {images.max()}"


def test_same_seed_same_images():
    values = np.random.default_rng(4).integers(1, 10, size=(100, 4))
    first = render(values, noise=0.03, seed=7)
    second = render(values, noise=0.03, seed=7)
    other = render(values, noise=0.03, seed=8)
    assert np.array_equal(first, second), "one seed gave two different batches"
    assert not np.array_equal(first, other), "two seeds gave the same batch"


def test_images_do_not_depend_on_thread_count(monkeypatch):
    values = np.random.default_rng(5).integers(1, 10, size=(150, 4))
    threaded = render(values, noise=0.03, colours=3, seed=9)
    monkeypatch.setattr(pie_renderer, "_MAX_THREADS", 1)
    single = render(values, noise=0.03, colours=3, seed=9)
    assert np.array_equal(threaded, single), "the thread count changed the images"


@pytest.mark.parametrize("image_size", [32, 64])
def test_disc_area_and_centre(image_size):
    rng = np.random.default_rng(6)
    values = rng.integers(1, 10, size=(60, 4))
    images = render(values, image_size=image_size, colours=3)
    coverage = coverage_of(images)
    half = image_size / 2
    radius = quantity_of_value(values[:, 0], SIZE_RANGE) * half
    area = coverage.sum(axis=(1, 2))
    assert area == pytest.approx(np.pi * radius**2, rel=0.01), "disc areas differ from pi r^2"

    centres = np.arange(image_size) + 0.5
    centre_x = (coverage * centres[None, None, :]).sum(axis=(1, 2)) / area
    centre_y = (coverage * centres[None, :, None]).sum(axis=(1, 2)) / area
    expected_x = half + quantity_of_value(values[:, 1], OFFSET_RANGE) * half
    expected_y = half + quantity_of_value(values[:, 2], OFFSET_RANGE) * half
    assert centre_x == pytest.approx(expected_x, abs=0.05), "x centres are off"
    assert centre_y == pytest.approx(expected_y, abs=0.05), "y centres are off"


def test_red_wedge_area_matches_share():
    # Red (0.9, 0.1, 0.1) and blue (0.1, 0.1, 0.9): green is 1 - 0.9 coverage, and blue's
    # ink is coverage * (0.9 - 0.8 red weight), so red area = sum(ink_b - 0.1 cov) / 0.8.
    values = np.column_stack(
        [np.full(200, 9), np.full(200, 5), np.full(200, 5), np.arange(200) % 9 + 1]
    )
    images = render(values, colours=2, seed=11)
    coverage = coverage_of(images)
    red_area = ((1.0 - images[..., 2]) - 0.1 * coverage).sum(axis=(1, 2)) / 0.8
    share = red_area / coverage.sum(axis=(1, 2))
    expected = quantity_of_value(values[:, 3], RED_SHARE_RANGE)
    assert share == pytest.approx(expected, abs=0.002), "anti-aliased wedges change the share"


def test_fixed_rotation_starts_red_at_twelve_o_clock():
    # Red share 0.5 (value 5), clockwise from 12 o'clock: red is the right half.
    images = render([[9, 5, 5, 5]], colours=2, random_rotation=False)
    image = images[0]
    assert tuple(image[32, 50]) == pytest.approx(PALETTE["red"], abs=1e-5), (
        "right of centre is not red"
    )
    assert tuple(image[32, 14]) == pytest.approx(PALETTE["blue"], abs=1e-5), (
        "left of centre is not blue"
    )
    assert tuple(image[2, 2]) == pytest.approx((1.0, 1.0, 1.0)), "the corner is not white"


def test_fixed_rotation_wedge_order():
    # Four colours, red share 0.1: red from 12 o'clock to 36 degrees, then blue, green and
    # yellow at 30% each, clockwise.
    image = render([[9, 5, 5, 1]], colours=4, random_rotation=False)[0]
    centre = 32.0

    def colour_at(degrees_clockwise: float) -> tuple[float, ...]:
        angle = np.deg2rad(degrees_clockwise) - np.pi / 2
        row = int(centre + 18 * np.sin(angle))
        column = int(centre + 18 * np.cos(angle))
        return tuple(image[row, column])

    assert colour_at(18) == pytest.approx(PALETTE["red"], abs=1e-5)
    assert colour_at(36 + 54) == pytest.approx(PALETTE["blue"], abs=1e-5)
    assert colour_at(36 + 108 + 54) == pytest.approx(PALETTE["green"], abs=1e-5)
    assert colour_at(36 + 216 + 54) == pytest.approx(PALETTE["yellow"], abs=1e-5)


def test_one_colour_pie_has_no_red():
    images = render([[9, 5, 5, 0]], colours=1)
    disc = coverage_of(images)[0] > 0.999
    assert disc.sum() > 500, "the disc is missing"
    assert np.allclose(images[0][disc], PALETTE["blue"]), "a one-colour pie is not all blue"


def test_wedge_colours_by_count():
    assert wedge_colours(1) == ("blue",)
    assert wedge_colours(2) == ("red", "blue")
    assert wedge_colours(4) == ("red", "blue", "green", "yellow")
    with pytest.raises(ValueError, match="colours must lie in 1..4, got 5"):
        wedge_colours(5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.ones((3, 3), dtype=np.int64), r"shape \(N, 4\)"),
        (np.array([[0, 5, 5, 5]]), "values must lie in 1..9, got 0..5"),
        (np.array([[5, 5, 5, 10]]), "values must lie in 1..9, got 5..10"),
    ],
)
def test_render_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        render(values)


# Family


def test_family_render_returns_true_features():
    design = PieDataset(colours=3, values=[(0, 0, 0, 0)], image_size=32)
    batch = family_for(design).render(design, 300, np.random.default_rng(12))
    assert batch.images.shape == (300, 32, 32, 3)
    assert sorted(batch.features) == ["colours", "red_share", "size", "x", "y"]
    for name in ("size", "x", "y", "red_share"):
        values = batch.features[name]
        assert values.dtype == np.float64, f"{name} dtype {values.dtype}"
        assert set(np.unique(values)) <= set(range(1, 10)), f"{name} values {np.unique(values)}"
    assert (batch.features["colours"] == 3).all()


def test_family_features_leave_out_red_for_one_colour():
    family = PieFamily()
    one_colour = PieDataset(colours=1, values=[(5, 5, 5, None)])
    names = [feature.name for feature in family.features(one_colour)]
    assert names == ["size", "x", "y", "colours"]
    names = [feature.name for feature in family.features(PieDataset())]
    assert names == ["size", "x", "y", "red_share", "colours"]


def test_family_probe_reads_renders_back():
    design = PieDataset(colours=2, values=[(0, 0, 0, 0)], image_size=64, noise=0.03)
    family = PieFamily()
    batch = family.render(design, 400, np.random.default_rng(13))
    probed = family.probe(batch.images, design)
    assert sorted(probed) == sorted(batch.features)
    for name in ("size", "x", "y"):
        error = np.abs(probed[name] - batch.features[name])
        assert (error <= 1).all(), f"{name}: largest error {np.nanmax(error):.3f} bins"
    histograms = family.histograms(design, probed)
    assert histograms["size"].total == 400
    assert histograms["size"].unrecognized == 0


def test_training_set_with_fixed_pie_images():
    design = PieDataset(values=[(3, 5, 5, 7)], training_images=64)
    training = TrainingSet(design, seed=3)
    assert training.fixed is not None
    batch = training.batch(16)
    assert batch.images.shape == (16, 32, 32, 3)
    assert (batch.features["red_share"] == 7).all()
    reference = training.reference_features(100)
    assert (reference["size"] == 3).all()
