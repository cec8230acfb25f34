"""The shapes probe: accuracy on seeded renders, and unreadable halves read as NaN."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from biaslab.datasets.shapes import COLOUR_RGB, render_objects
from biaslab.design.shapes import COLOURS, SHAPES
from biaslab.probes.shapes import read_objects

# Every shape and colour on both sides, drawn uniformly.
ACCURACY_IMAGES = 1500
REQUIRED_ACCURACY = 0.99


def confusions(true: np.ndarray, read: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    """Count the misreadings as "true -> read" (NaN read as "unrecognized")."""
    found: dict[str, int] = {}
    for expected, got in zip(true.reshape(-1), read.reshape(-1), strict=True):
        if got == expected:
            continue
        key = f"{names[expected]} -> {'unrecognized' if np.isnan(got) else names[int(got)]}"
        found[key] = found.get(key, 0) + 1
    return found


def white(n: int, size: int = 32) -> np.ndarray:
    return np.ones((n, size, size, 3), dtype=np.float32)


def paint_disc(image: np.ndarray, centre: tuple[float, float], radius: float, rgb) -> None:
    """Paint a hard-edged disc of colour rgb onto image (H, W, 3) in place."""
    rows, columns = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    inside = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2
    image[inside] = rgb


@pytest.mark.parametrize("jitter", [False, True], ids=["fixed", "jitter"])
@pytest.mark.parametrize("noise", [0.0, 0.03])
@pytest.mark.parametrize("image_size", [32, 64])
def test_accuracy_on_renders(image_size, noise, jitter):
    rng = np.random.default_rng(1000 * image_size + int(noise * 100) + jitter)
    shapes = rng.integers(0, len(SHAPES), size=(ACCURACY_IMAGES, 2))
    colours = rng.integers(0, len(COLOURS), size=(ACCURACY_IMAGES, 2))
    images = render_objects(
        shapes,
        colours,
        image_size=image_size,
        noise=noise,
        size_jitter=0.2 if jitter else 0.0,
        position_jitter=0.05 if jitter else 0.0,
        rng=rng,
    )
    readings = read_objects(images)
    shape_accuracy = (readings.shapes == shapes).mean()
    colour_accuracy = (readings.colours == colours).mean()
    assert shape_accuracy >= REQUIRED_ACCURACY, (
        f"shape accuracy {shape_accuracy:.4f}: {confusions(shapes, readings.shapes, SHAPES)}"
    )
    assert colour_accuracy >= REQUIRED_ACCURACY, (
        f"colour accuracy {colour_accuracy:.4f}: {confusions(colours, readings.colours, COLOURS)}"
    )


def test_blank_image_and_blank_half_unrecognized():
    images = white(3)
    rng = np.random.default_rng(0)
    rendered = render_objects(
        np.array([[2, 4]]), np.array([[1, 3]]), image_size=32, noise=0.03, rng=rng
    )
    images[1] = rendered[0]
    images[2] = rendered[0]
    images[2, :, :16] = 1.0  # the left object wiped out
    readings = read_objects(images)
    assert readings.shapes.shape == (3, 2), "every image keeps its row, readable or not"
    assert np.isnan(readings.shapes[0]).all(), f"blank image read {readings.shapes[0]}"
    assert np.isnan(readings.colours[0]).all(), f"blank image read {readings.colours[0]}"
    assert readings.shapes[1].tolist() == [2.0, 4.0], f"read {readings.shapes[1]}"
    assert readings.colours[1].tolist() == [1.0, 3.0], f"read {readings.colours[1]}"
    assert np.isnan(readings.shapes[2, 0]), "a blank left half has no shape"
    assert np.isnan(readings.colours[2, 0]), "a blank left half has no colour"
    assert readings.shapes[2, 1] == 4.0, f"right shape read {readings.shapes[2, 1]}"
    assert readings.colours[2, 1] == 3.0, f"right colour read {readings.colours[2, 1]}"


def test_two_objects_in_one_half_unrecognized():
    images = white(1)
    paint_disc(images[0], (9, 8), 4, COLOUR_RGB[0])
    paint_disc(images[0], (23, 8), 4, COLOUR_RGB[0])
    paint_disc(images[0], (16, 24), 5, COLOUR_RGB[2])
    readings = read_objects(images)
    assert np.isnan(readings.shapes[0, 0]), "two discs in the left half read as one shape"
    assert np.isnan(readings.colours[0, 0]), "two discs in the left half read as one colour"
    assert readings.shapes[0, 1] == SHAPES.index("circle"), f"right read {readings.shapes[0]}"
    assert readings.colours[0, 1] == COLOURS.index("blue")


def test_speck_and_small_dust_ignored_or_unrecognized():
    images = white(2)
    paint_disc(images[0], (16, 8), 1.2, COLOUR_RGB[0])  # a speck: too small to read
    paint_disc(images[1], (16, 8), 5, COLOUR_RGB[0])
    images[1, 2, 2] = 0.0  # one dark pixel beside the disc is dust, not a second object
    readings = read_objects(images)
    assert np.isnan(readings.shapes[0, 0]), "a speck read as a shape"
    assert np.isnan(readings.colours[0, 0]), "a speck read as a colour"
    assert readings.shapes[1, 0] == SHAPES.index("circle"), f"read {readings.shapes[1]}"
    assert readings.colours[1, 0] == COLOURS.index("red")


def test_blended_grey_and_pale_colours():
    images = white(4)
    paint_disc(images[0], (16, 8), 5, (1.0, 0.5, 0.0))  # halfway between red and yellow
    paint_disc(images[1], (16, 8), 5, (0.3, 0.3, 0.3))  # grey
    paint_disc(images[2], (16, 8), 5, (1.0, 0.4, 0.4))  # pale red, strength 0.6
    paint_disc(images[3], (16, 8), 5, (1.0, 0.6, 0.6))  # paler red, strength 0.4: background
    readings = read_objects(images)
    assert np.isnan(readings.colours[0, 0]), "a red-yellow blend read as a palette colour"
    assert np.isnan(readings.colours[1, 0]), "grey read as a palette colour"
    assert readings.colours[2, 0] == COLOURS.index("red"), f"pale red read {readings.colours[2]}"
    assert (readings.shapes[:3, 0] == SHAPES.index("circle")).all(), "a disc is a circle"
    assert np.isnan(readings.shapes[3, 0]), "a disc fainter than 0.5 read as a shape"
    assert np.isnan(readings.colours[3, 0]), "a disc fainter than 0.5 read as a colour"


def test_shapeless_blob_unrecognized_with_colour_kept():
    images = white(1)
    for row in range(8, 24):  # a thin diagonal bar, unlike every template
        images[0, row, row - 8 : row - 5] = COLOUR_RGB[1]
    readings = read_objects(images)
    assert np.isnan(readings.shapes[0, 0]), f"a bar read as {readings.shapes[0, 0]}"
    assert readings.colours[0, 0] == COLOURS.index("green"), "the bar's colour is readable"


def test_random_noise_and_black_unrecognized():
    rng = np.random.default_rng(0)
    images = np.concatenate(
        [rng.random((4, 32, 32, 3), dtype=np.float32), np.zeros((1, 32, 32, 3), np.float32)]
    )
    readings = read_objects(images)
    assert np.isnan(readings.shapes).all(), f"noise or black read as {readings.shapes}"
    assert np.isnan(readings.colours).all(), f"noise or black read as {readings.colours}"


def test_other_image_sizes_read():
    """Uploaded samples may have any size: the rule uses no pixel sizes of the renderer."""
    rng = np.random.default_rng(4)
    shapes = rng.integers(0, len(SHAPES), size=(300, 2))
    colours = rng.integers(0, len(COLOURS), size=(300, 2))
    images = render_objects(shapes, colours, image_size=64, noise=0.0, rng=rng)
    # Nearest-neighbour upscaling to 128 pixels, plus one white column: 129 pixels wide.
    large = images.repeat(2, axis=1).repeat(2, axis=2)
    large = np.concatenate([large[:, :, :128], np.ones((300, 128, 1, 3), np.float32)], axis=2)
    readings = read_objects(large)
    assert (readings.shapes == shapes).mean() >= REQUIRED_ACCURACY
    assert (readings.colours == colours).mean() >= REQUIRED_ACCURACY


@pytest.mark.parametrize(("noise", "blur"), [(0.1, 0.0), (0.03, 1.5)], ids=["noisy", "blurred"])
def test_hard_renders_unrecognized_not_misread(noise, blur):
    """Renders at noise 0.1, or blurred until shapes blend, lose readings but gain no errors."""
    rng = np.random.default_rng(9)
    shapes = rng.integers(0, len(SHAPES), size=(600, 2))
    colours = rng.integers(0, len(COLOURS), size=(600, 2))
    images = render_objects(
        shapes, colours, image_size=32, noise=noise, size_jitter=0.2, position_jitter=0.05, rng=rng
    )
    if blur:
        images = ndimage.gaussian_filter(images, sigma=(0, blur, blur, 0))
    readings = read_objects(images)
    recognized = ~np.isnan(readings.shapes)
    wrong = (recognized & (readings.shapes != shapes)).mean()
    assert wrong <= 0.005, (
        f"{wrong:.4f} of shapes misread: {confusions(shapes, readings.shapes, SHAPES)}"
    )
    if blur == 0:
        assert recognized.mean() >= 0.995, f"only {recognized.mean():.4f} of noisy shapes read"
    assert (readings.colours == colours).mean() >= REQUIRED_ACCURACY, "colours survive both"


def test_invalid_input_rejected():
    with pytest.raises(ValueError, match="must have shape"):
        read_objects(np.ones((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="must be float"):
        read_objects(np.ones((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 8x8"):
        read_objects(np.ones((2, 4, 32, 3), np.float32))
    assert read_objects(np.ones((0, 32, 32, 3), np.float32)).shapes.shape == (0, 2)
