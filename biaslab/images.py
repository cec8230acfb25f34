"""Conversions of image batches to 8-bit pixels and to PNG grids for the browser."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

# Colour of the padding between grid tiles: light grey, so white image borders stay visible.
GRID_PADDING_COLOUR = (200, 200, 200)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Convert float images in [0, 1] to uint8 by rounding, and return uint8 input unchanged.

    Values outside [0, 1] saturate at 0 or 255, and NaN becomes 0.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be float in [0, 1] or uint8, got dtype {images.dtype}")
    # fmax returns the number when the other operand is NaN, unlike clip.
    clipped = np.ascontiguousarray(np.fmax(images, np.float32(0), dtype=np.float32))
    if clipped.size == 0:
        return np.zeros(images.shape, dtype=np.uint8)
    # convertScaleAbs scales, rounds half to even like np.rint and saturates at 255 in one
    # pass. Its absolute value changes nothing here, because every value is >= 0.
    # One row per image keeps both dimensions of OpenCV's matrix within its int range.
    rows = clipped.reshape(len(clipped), -1) if clipped.ndim > 1 else clipped.reshape(1, -1)
    return cv2.convertScaleAbs(rows, alpha=255).reshape(images.shape)


def png_grid(images: np.ndarray, columns: int, padding: int = 2) -> bytes:
    """Encode images (N, H, W, 3), float or uint8, as a PNG grid with `columns` tiles a row.

    `padding` pixels of GRID_PADDING_COLOUR separate the tiles and frame the grid. The grid is
    always `columns` tiles wide, and cells after the last image stay padding-coloured.
    """
    images = to_uint8(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("images is empty, but a grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if padding < 0:
        raise ValueError(f"padding must be at least 0, got {padding}")

    n, height, width, _ = images.shape
    rows = math.ceil(n / columns)
    # Each cell is a tile plus padding below and to its right. One more band of padding
    # on the top and the left closes the frame.
    cells = np.empty((rows * columns, height + padding, width + padding, 3), dtype=np.uint8)
    cells[:] = GRID_PADDING_COLOUR
    cells[:n, :height, :width] = images
    body = cells.reshape(rows, columns, height + padding, width + padding, 3)
    body = body.transpose(0, 2, 1, 3, 4).reshape(rows * (height + padding), -1, 3)
    grid = np.empty((body.shape[0] + padding, body.shape[1] + padding, 3), dtype=np.uint8)
    grid[:] = GRID_PADDING_COLOUR
    grid[padding:, padding:] = body

    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    return buffer.getvalue()
