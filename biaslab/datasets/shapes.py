"""Images of two coloured shapes, left and right, on a white background, rendered batch at a time.

Pixel (i, j) covers [j, j + 1) x [i, i + 1). The left object is centred at
(image_size / 2, image_size / 4) as (y, x), and the right one at (image_size / 2,
3 * image_size / 4), each moved by whole pixels when the design has position jitter. An
object's radius is the half-width of its bounding box: NOMINAL_RADIUS of the image width,
times its size level. Every object stays inside its own half of the image.

Coverage masks are computed once per image size, shape and size level, by sampling 8 x 8
points per pixel, and cached. Drawing an image then only copies two masks into it, times
the ink of each colour. Edges are anti-aliased by the sampling.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# The dots renderer's noise helpers, so both families draw the same noise the same way.
from biaslab.datasets.noise import fill_with_noise, reflect_into_unit_interval
from biaslab.design.shapes import (
    COLOURS,
    MAX_POSITION_JITTER,
    MAX_SIZE_JITTER,
    SHAPES,
    ShapesDataset,
)

# An object's radius (half the width of its bounding box) as a fraction of the image width.
# With the largest size and position jitter, an object and its anti-aliased rim stay inside
# its half at 32x32 and 64x64: see `_check_objects_fit`.
NOMINAL_RADIUS = 0.16
# Size jitter draws each object's size from this many even steps in [1 - j, 1 + j].
SIZE_LEVELS = 9
# Sample points per pixel along each axis when computing coverage masks.
SUPERSAMPLING = 8

# RGB of each colour, in the order of COLOURS. Every colour has a channel at 0, so an
# object's darkest channel is as dark as black and the probe finds it at any hue.
COLOUR_RGB = np.array(
    [
        [1.0, 0.0, 0.0],  # red
        [0.0, 1.0, 0.0],  # green
        [0.0, 0.0, 1.0],  # blue
        [1.0, 1.0, 0.0],  # yellow
        [1.0, 0.0, 1.0],  # magenta
        [0.0, 1.0, 1.0],  # cyan
    ],
    dtype=np.float32,
)


def _star(points: int, inner: float) -> np.ndarray:
    """Return the vertices of a star with one point up, outer radius 1, as (x, y), y down."""
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    # Centre the bounding box vertically: the top point is at -1, the lowest points higher.
    vertices[:, 1] -= (vertices[:, 1].max() + vertices[:, 1].min()) / 2
    return vertices


# Polygon outlines in units of the object's radius, as (x, y) with y pointing down. Each
# bounding box is centred on the object's centre. The circle is the unit disc.
_ARM = 0.3  # half the width of the cross's arms
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]]),
    "triangle": np.array([[0.0, -0.9], [1.0, 0.9], [-1.0, 0.9]]),
    "diamond": np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
    "cross": np.array(
        [
            [-_ARM, -0.9],
            [_ARM, -0.9],
            [_ARM, -_ARM],
            [0.9, -_ARM],
            [0.9, _ARM],
            [_ARM, _ARM],
            [_ARM, 0.9],
            [-_ARM, 0.9],
            [-_ARM, _ARM],
            [-0.9, _ARM],
            [-0.9, -_ARM],
            [-_ARM, -_ARM],
        ]
    ),
    "star": _star(points=5, inner=0.45),
}

# Images per thread task: small enough that buffers stay in cache.
_CHUNK_IMAGES = 128
_MAX_THREADS = 4


@dataclass(frozen=True)
class ShapesBatch:
    """Rendered images with the true shape and colour of each object."""

    images: np.ndarray  # float32, (N, H, W, 3), values in [0, 1], white background = 1.0
    shapes: np.ndarray  # int64, (N, 2): index into SHAPES of the left and right object
    colours: np.ndarray  # int64, (N, 2): index into COLOURS of the left and right object


def render_shapes(design: ShapesDataset, n: int, rng: np.random.Generator) -> ShapesBatch:
    """Render n images whose combinations are drawn uniformly from the design's training ones."""
    combinations = training_indices(design)
    chosen = combinations[rng.integers(0, len(combinations), size=n)]
    shapes, colours = chosen[:, :2], chosen[:, 2:]
    images = render_objects(
        shapes,
        colours,
        image_size=design.image_size,
        noise=design.noise,
        size_jitter=design.size_jitter,
        position_jitter=design.position_jitter,
        rng=rng,
    )
    return ShapesBatch(images=images, shapes=shapes, colours=colours)


def training_indices(design: ShapesDataset) -> np.ndarray:
    """Return the design's training combinations as read-only int64 indices (m, 4).

    Columns are the left and right shapes' indices into SHAPES, then the left and right
    colours' indices into COLOURS. Results are cached by the fields that set them.
    """
    fields = {"shapes", "colours", "held_out", "restricted"}
    return _training_indices(design.model_dump_json(include=fields))


@functools.lru_cache(maxsize=64)
def _training_indices(fields_json: str) -> np.ndarray:
    design = ShapesDataset.model_validate_json(fields_json)
    indices = np.array(
        [
            [
                SHAPES.index(left_shape),
                SHAPES.index(right_shape),
                COLOURS.index(left_colour),
                COLOURS.index(right_colour),
            ]
            for left_shape, right_shape, left_colour, right_colour in (
                design.training_combinations()
            )
        ],
        dtype=np.int64,
    )
    indices.flags.writeable = False
    return indices


def render_objects(
    shapes: np.ndarray,
    colours: np.ndarray,
    *,
    image_size: int,
    noise: float,
    size_jitter: float = 0.0,
    position_jitter: float = 0.0,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one image per row of shapes and colours, as float32 (N, H, W, 3) in [0, 1].

    shapes and colours are int (N, 2) indices into SHAPES and COLOURS, left object first.
    Noise is Gaussian with standard deviation `noise`, reflected at 0 and 1 rather than
    clipped. Sizes, positions and noise come from `rng`. Drawing and noise run in threads
    on chunks of `_CHUNK_IMAGES` images, each chunk with a generator seeded from `rng`, so
    the images depend on the state of `rng` and not on the number of threads.
    """
    shapes = np.asarray(shapes, dtype=np.int64)
    colours = np.asarray(colours, dtype=np.int64)
    _check_render_arguments(shapes, colours, image_size, noise, size_jitter, position_jitter)
    n = shapes.shape[0]

    masks = coverage_masks(image_size, size_jitter)  # (shapes, levels, P, P)
    patch = masks.shape[-1]
    shift = math.floor(position_jitter * image_size + 1e-9)
    _check_objects_fit(image_size, patch, shift)
    levels = rng.integers(0, masks.shape[1], size=(n, 2))
    offsets = rng.integers(-shift, shift + 1, size=(n, 2, 2))  # (image, object, y/x)
    # Top-left corner of each object's patch: the patch's centre lies on the object's centre.
    centre_x = np.array([image_size // 4, 3 * image_size // 4])
    tops = image_size // 2 + offsets[:, :, 0] - patch // 2
    lefts = centre_x + offsets[:, :, 1] - patch // 2
    inks = 1.0 - COLOUR_RGB[colours]  # (N, 2, 3)

    starts = range(0, n, _CHUNK_IMAGES)
    seeds = rng.integers(0, 2**63, size=len(starts))
    images = np.empty((n, image_size, image_size, 3), dtype=np.float32)

    def render_chunk(index: int) -> None:
        rows = slice(starts[index], starts[index] + _CHUNK_IMAGES)
        chunk = images[rows]
        if noise > 0:
            fill_with_noise(chunk, noise, np.random.default_rng(seeds[index]))
        else:
            chunk.fill(1.0)
        for side in range(2):
            patches = masks[shapes[rows, side], levels[rows, side]]
            _draw(chunk, patches, tops[rows, side], lefts[rows, side], inks[rows, side])
        if noise > 0:
            reflect_into_unit_interval(chunk, noise)

    threads = _thread_count(len(starts))
    if threads <= 1:
        for index in range(len(starts)):
            render_chunk(index)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(render_chunk, index) for index in range(len(starts))]:
                future.result()
    return images


def _draw(
    images: np.ndarray, patches: np.ndarray, tops: np.ndarray, lefts: np.ndarray, inks: np.ndarray
) -> None:
    """Subtract coverage patches (n, P, P) times inks (n, 3) from images (n, H, W, 3) in place."""
    patch = patches.shape[-1]
    windows = sliding_window_view(images, (patch, patch), axis=(1, 2), writeable=True)
    rows = np.arange(images.shape[0])
    window = windows[rows, tops, lefts]  # a copy, (n, 3, P, P)
    window -= patches[:, None] * inks[:, :, None, None]
    windows[rows, tops, lefts] = window


def _check_render_arguments(
    shapes: np.ndarray,
    colours: np.ndarray,
    image_size: int,
    noise: float,
    size_jitter: float,
    position_jitter: float,
) -> None:
    for name, values, known in (("shapes", shapes, SHAPES), ("colours", colours, COLOURS)):
        if values.ndim != 2 or values.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {values.shape}")
        if values.size and (values.min() < 0 or values.max() >= len(known)):
            raise ValueError(
                f"{name} must be indices in 0..{len(known) - 1}, got {values.min()}..{values.max()}"
            )
    if shapes.shape[0] != colours.shape[0]:
        raise ValueError(f"shapes has {shapes.shape[0]} rows but colours has {colours.shape[0]}")
    if image_size not in (32, 64):
        raise ValueError(f"image_size must be 32 or 64, got {image_size}")
    if noise < 0:
        raise ValueError(f"noise must be at least 0, got {noise}")
    if not 0 <= size_jitter <= MAX_SIZE_JITTER:
        raise ValueError(f"size_jitter must lie in [0, {MAX_SIZE_JITTER}], got {size_jitter}")
    if not 0 <= position_jitter <= MAX_POSITION_JITTER:
        raise ValueError(
            f"position_jitter must lie in [0, {MAX_POSITION_JITTER}], got {position_jitter}"
        )


def _check_objects_fit(image_size: int, patch: int, shift: int) -> None:
    """Raise RuntimeError when a patch could cross its half's edge, which the limits prevent."""
    if patch // 2 + shift > image_size // 4:
        raise RuntimeError(
            f"a {patch}-pixel patch moved by up to {shift} pixels leaves its half of a "
            f"{image_size}-pixel image; NOMINAL_RADIUS or the jitter limits are too large"
        )


def _thread_count(n_tasks: int) -> int:
    """Return how many threads to use: one per task, at most _MAX_THREADS or the CPU count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_THREADS, cpus or 1, n_tasks))


def size_factors(size_jitter: float) -> np.ndarray:
    """Return the size levels as factors of the nominal radius: one level without jitter."""
    if size_jitter == 0:
        return np.ones(1)
    return 1.0 + size_jitter * np.linspace(-1.0, 1.0, SIZE_LEVELS)


@functools.lru_cache(maxsize=16)
def coverage_masks(image_size: int, size_jitter: float) -> np.ndarray:
    """Return float32 coverage masks (len(SHAPES), levels, P, P), read-only and cached.

    Each mask is one shape at one size level, centred on the corner shared by the four
    middle pixels of a P x P patch. P is the smallest even width that fits the largest
    level's object and its rim.
    """
    factors = size_factors(size_jitter)
    largest = NOMINAL_RADIUS * image_size * factors.max()
    patch = 2 * math.ceil(largest + 0.5)
    # Sample points in pixels relative to the patch centre, (P * S,) along each axis.
    points = (np.arange(patch * SUPERSAMPLING) + 0.5) / SUPERSAMPLING - patch / 2
    masks = np.empty((len(SHAPES), factors.size, patch, patch), dtype=np.float32)
    for level, factor in enumerate(factors):
        radius = NOMINAL_RADIUS * image_size * factor
        y, x = np.meshgrid(points / radius, points / radius, indexing="ij")
        for index, name in enumerate(SHAPES):
            inside = inside_shape(name, x, y)
            blocks = inside.reshape(patch, SUPERSAMPLING, patch, SUPERSAMPLING)
            masks[index, level] = blocks.mean(axis=(1, 3))
    masks.flags.writeable = False
    return masks


def inside_shape(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return whether points (x, y), in units of the object's radius with y down, are inside."""
    if name == "circle":
        return np.asarray(x * x + y * y <= 1.0)
    return _inside_polygon(POLYGONS[name], x, y)


def _inside_polygon(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return whether points lie inside a simple polygon, by the even-odd crossing rule."""
    inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > y) != (y2 > y)
        x_at_y = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at_y)
    return inside
