"""Conversion to uint8 and PNG grids."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from biaslab.images import GRID_PADDING_COLOUR, png_grid, to_uint8


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG", f"format {image.format}"
    assert image.mode == "RGB", f"mode {image.mode}"
    return np.asarray(image)


def test_to_uint8_rounds_and_saturates():
    values = np.array([0.0, 1.0, 0.2, 0.998, -0.5, 1.5, np.nan, np.inf], dtype=np.float32)
    converted = to_uint8(values)
    assert converted.dtype == np.uint8, f"dtype {converted.dtype}"
    assert converted.tolist() == [0, 255, 51, 254, 0, 255, 0, 255], converted.tolist()


def test_to_uint8_rounds_half_to_even():
    halves = (np.arange(511) / 2 / 255).astype(np.float32)
    expected = np.rint(halves * np.float32(255)).astype(np.uint8)
    assert np.array_equal(to_uint8(halves), expected), "halves rounded unlike np.rint"


@pytest.mark.parametrize(
    "images",
    [
        np.linspace(-0.5, 1.5, 120).reshape(2, 4, 5, 3),
        np.linspace(0, 1, 120, dtype=np.float32).reshape(4, 2, 5, 3).transpose(1, 0, 2, 3),
        np.float64(0.5) * np.ones(()),
        np.zeros((0, 8, 8, 3)),
    ],
    ids=["float64", "not contiguous", "zero dimensions", "empty"],
)
def test_to_uint8_any_layout(images):
    converted = to_uint8(images)
    expected = np.clip(np.rint(images.astype(np.float32) * np.float32(255)), 0, 255)
    assert converted.shape == images.shape, f"shape {converted.shape}, not {images.shape}"
    assert converted.dtype == np.uint8, f"dtype {converted.dtype}"
    assert np.array_equal(converted, expected.astype(np.uint8)), "values differ from np.rint"


def test_to_uint8_passes_uint8_through():
    images = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    assert to_uint8(images) is images, "uint8 input should be returned as it is"


def test_to_uint8_rejects_integers_other_than_uint8():
    with pytest.raises(ValueError, match="float in \\[0, 1\\] or uint8"):
        to_uint8(np.zeros((1, 2, 2, 3), dtype=np.int32))


def test_png_grid_size_and_tiles():
    rng = np.random.default_rng(0)
    images = rng.random((10, 32, 32, 3), dtype=np.float32)
    grid = decode(png_grid(images, columns=4, padding=2))
    # 4 columns and 3 rows of 32-pixel tiles, with 2 pixels before, between and after them.
    assert grid.shape == (3 * 34 + 2, 4 * 34 + 2, 3), f"grid shape {grid.shape}"
    expected = to_uint8(images)
    assert np.array_equal(grid[2:34, 2:34], expected[0]), "first tile is not image 0"
    assert np.array_equal(grid[36:68, 104:136], expected[7]), "row 1, column 3 is not image 7"
    assert np.array_equal(grid[70:102, 36:68], expected[9]), "row 2, column 1 is not image 9"


def test_png_grid_padding_and_empty_cells_are_grey():
    images = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    grid = decode(png_grid(images, columns=3, padding=1))
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3), f"grid shape {grid.shape}"
    grey = np.array(GRID_PADDING_COLOUR, dtype=np.uint8)
    assert (grid[0] == grey).all(), "top border is not padding-coloured"
    assert (grid[:, 9] == grey).all(), "gap between columns 0 and 1 is not padding-coloured"
    assert (grid[10:18, 19:27] == grey).all(), "the empty sixth cell is not padding-coloured"
    assert (grid[10:18, 10:18] == 0).all(), "image 4 is missing from row 1, column 1"


def test_png_grid_without_padding():
    images = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    grid = decode(png_grid(images, columns=2, padding=0))
    assert grid.shape == (4, 8, 3), f"grid shape {grid.shape}"
    assert (grid == 255).all(), "tiles without padding should fill the grid"


@pytest.mark.parametrize(
    ("images", "columns", "padding", "message"),
    [
        (np.zeros((0, 8, 8, 3)), 2, 2, "images is empty"),
        (np.zeros((2, 8, 8)), 2, 2, r"shape \(N, H, W, 3\)"),
        (np.zeros((2, 8, 8, 3)), 0, 2, "columns must be at least 1"),
        (np.zeros((2, 8, 8, 3)), 2, -1, "padding must be at least 0"),
    ],
)
def test_png_grid_rejects_invalid_arguments(images, columns, padding, message):
    with pytest.raises(ValueError, match=message):
        png_grid(images, columns, padding)
