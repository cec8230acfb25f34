"""Read the shape and colour of the left and the right object in images.

The rule, applied to each half of each image (the left object lies in the left half):

1. A pixel's strength is 1 minus its lightest channel. Every palette colour has a channel
   at 0, so an object's inside has a strength near 1 at any hue, and white has 0.
   Foreground pixels have a strength above FOREGROUND_MIN_STRENGTH; foreground components
   are 8-connected.
2. The object is the half's largest component. The half is unrecognized when it has no
   foreground, when the object is less than MIN_EXTENT_PIXELS high or wide, or when a
   second component has at least SECOND_OBJECT_MAX_SHARE of the object's area (two
   objects, or one object broken apart).
3. Shape: the object's coverage is the strength of its pixels and of the one-pixel ring
   around them, rescaled so that the half's background is 0 and the object's inside is 1
   (a faint object's inside has a strength below 1). The coverage's centroid and radius of
   gyration (the root mean square distance from the centroid) place a grid of
   GRID_POINTS x GRID_POINTS points on the object, in units of that radius, and the
   coverage is sampled bilinearly at those points. Each shape's template is the same grid
   over the ideal shape, blurred by a Gaussian as wide as the blur of pixels and sampling
   (PIXEL_BLUR pixels), or up to 3.1 times blurrier (EXTRA_BLUR_STEPS). The shape is the
   template with the smallest mean squared difference. It is unrecognized when that
   difference is above SHAPE_MAX_DISTANCE, or above SHAPE_MAX_DISTANCE_RATIO times the
   second smallest shape's difference. Moments weigh every pixel by its coverage, so the
   reading depends neither on the object's size nor on where it sits on the pixel grid.
4. Colour: the object's ink, its darkness 1 - value per channel, is the strength-weighted
   sum of its pixels' darkness divided by the strength-weighted sum of their strength. An
   anti-aliased pixel with coverage a has darkness a * ink and strength a, so on a render
   this is the ink itself. On any image it scales the ink so that its darkest channel is
   1, so a pale or dark version of a hue reads as that hue. The colour is the palette
   colour nearest to 1 - ink, unrecognized when it is further than COLOUR_MAX_DISTANCE.

Shape and colour are read apart: an object can have a recognized colour and an
unrecognized shape.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from biaslab.datasets.shapes import COLOUR_RGB, inside_shape
from biaslab.design.shapes import SHAPES

# Anti-aliased rims blend the ink with white in proportion to coverage, so at 0.5 the
# foreground's outline is the object's outline. Noise of sigma 0.03 reaches 0.5 with a
# probability below 1e-50 per pixel.
FOREGROUND_MIN_STRENGTH = 0.5
# Below this many pixels across, the shapes of the palette differ by a pixel or two.
MIN_EXTENT_PIXELS = 4
# A second component of at least this share of the object's area makes the half unreadable.
SECOND_OBJECT_MAX_SHARE = 0.25
# The sampling grid spans +-GRID_EXTENT radii of gyration from the centroid along each axis.
# Every shape's farthest point lies at most 2.04 radii of gyration from its centroid (the
# triangle's apex).
GRID_EXTENT = 2.3
GRID_POINTS = 20
# Area sampling by pixels (a box 1 pixel wide) and bilinear interpolation between pixel
# centres blur an object by about a Gaussian of this sigma, in pixels.
PIXEL_BLUR = 0.45
# Template blurs, in radii of gyration. An object's template is the one whose blur is
# nearest to PIXEL_BLUR / its radius of gyration, so the levels match radii of gyration of
# 0.75 to 22 pixels (renders have 2.1 to 8.7).
BLUR_LEVELS = np.geomspace(0.02, 0.6, 25)
# Each object is also compared with templates this many levels blurrier than its pixels
# (up to 3.1 times the blur), and each shape's distance is the smallest of these. Blurry
# samples then match the shape they blur.
EXTRA_BLUR_STEPS = (0, 2, 4, 6, 8)
# Largest mean squared difference between an object's samples and its shape's template.
# TODO: set against generated samples; renders at noise 0.1 reach 0.008 at most.
SHAPE_MAX_DISTANCE = 0.02
# The nearest template must be at most this share of the second nearest's distance, so an
# object that blur has made ambiguous is unrecognized rather than misread. Renders at noise
# 0.03 measured at most 0.18 (32x32, largest jitter).
SHAPE_MAX_DISTANCE_RATIO = 0.6
# Halfway between two palette colours lies 0.5 from each, so blends of two colours are
# unrecognized rather than read as either.
COLOUR_MAX_DISTANCE = 0.35

# Images per thread task: small enough that a chunk's arrays stay in cache.
_CHUNK_IMAGES = 64
_MAX_THREADS = 4
_EIGHT_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED[1] = True  # 8-connectivity within a half, none across halves


@dataclass(frozen=True)
class ObjectReadings:
    """The shape and colour read from each object, as float64 (N, 2), left object first.

    Values are indices into SHAPES and COLOURS, NaN where the probe could not read them.
    """

    shapes: np.ndarray
    colours: np.ndarray


def read_objects(images: np.ndarray) -> ObjectReadings:
    """Read the shape and colour of both objects in images (N, H, W, 3), float in [0, 1].

    The left object is read from the left W // 2 columns and the right one from the
    right W // 2 columns. The module docstring states the rule.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if images.shape[1] < 8 or images.shape[2] < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {images.shape[1:3]}")

    shapes = np.empty((images.shape[0], 2))
    colours = np.empty((images.shape[0], 2))
    starts = range(0, images.shape[0], _CHUNK_IMAGES)

    def read_chunk(index: int) -> None:
        rows = slice(starts[index], starts[index] + _CHUNK_IMAGES)
        shapes[rows], colours[rows] = _read_chunk(images[rows])

    _run_in_threads(read_chunk, len(starts))
    return ObjectReadings(shapes=shapes, colours=colours)


def _run_in_threads(task: Callable[[int], None], n_tasks: int) -> None:
    """Call task(0) .. task(n_tasks - 1) on up to _MAX_THREADS threads and re-raise errors."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = min(_MAX_THREADS, cpus or 1, n_tasks)
    if threads <= 1:
        for index in range(n_tasks):
            task(index)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(task, index) for index in range(n_tasks)]:
            future.result()


def _read_chunk(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the rule to images (n, H, W, 3) and return shapes and colours, float64 (n, 2)."""
    n, height, width, _ = images.shape
    half = width // 2
    if width % 2:
        images = np.concatenate([images[:, :, :half], images[:, :, width - half :]], axis=2)
    images = np.ascontiguousarray(images, dtype=np.float32)
    # Channel by channel, because numpy reduces over a last axis of length 3 slowly.
    lightest = np.minimum(images[..., 0], images[..., 1])
    np.minimum(lightest, images[..., 2], out=lightest)
    strength = np.subtract(np.float32(1.0), lightest)
    np.clip(strength, 0.0, 1.0, out=strength)
    # (2n, H, half): the left half of image i at 2i, its right half at 2i + 1.
    strength = strength.reshape(n, height, 2, half).transpose(0, 2, 1, 3).reshape(-1, height, half)

    objects = _find_objects(strength > FOREGROUND_MIN_STRENGTH)
    shapes = _read_shapes(strength, objects)
    colours = _read_colours(images, strength, objects)
    return shapes.reshape(n, 2), colours.reshape(n, 2)


@dataclass(frozen=True)
class _Objects:
    """The object found in each of m halves (H, W), and whether each half is readable."""

    mask: np.ndarray  # bool (m, H, W)
    readable: np.ndarray  # bool (m,)
    pixels: np.ndarray  # int64: flat indices into (m, H, W) of every object pixel
    halves: np.ndarray  # int64: the half of each pixel in `pixels`


def _find_objects(foreground: np.ndarray) -> _Objects:
    """Find each half's object in a foreground mask (m, H, W) and check it (step 2)."""
    m, height, width = foreground.shape
    labels, n_components = ndimage.label(foreground, structure=_EIGHT_CONNECTED)
    flat = labels.reshape(-1)
    pixels = np.flatnonzero(flat)
    components = flat[pixels]
    area = np.bincount(components, minlength=n_components + 1)
    owner = np.zeros(n_components + 1, dtype=np.int64)
    owner[components] = pixels // (height * width)

    # Components sorted by half, then by area: each half's last one is its object, and the
    # one before it, when in the same half, is the second largest.
    order = np.lexsort((area[1:], owner[1:])) + 1
    sorted_owner = owner[order]
    last = np.flatnonzero(np.append(sorted_owner[1:] != sorted_owner[:-1], True))
    largest = np.zeros(m, dtype=np.int64)
    largest[sorted_owner[last]] = order[last]
    second_area = np.zeros(m, dtype=np.int64)
    has_second = (last > 0) & (sorted_owner[np.maximum(last - 1, 0)] == sorted_owner[last])
    second_area[sorted_owner[last[has_second]]] = area[order[last[has_second] - 1]]

    # Label 0 is the background, so a half without foreground gets an empty mask.
    mask = labels == largest[:, None, None]
    mask &= (largest > 0)[:, None, None]
    readable = (
        (largest > 0)
        & (_extent(mask.any(axis=2)) >= MIN_EXTENT_PIXELS)
        & (_extent(mask.any(axis=1)) >= MIN_EXTENT_PIXELS)
        & (second_area < SECOND_OBJECT_MAX_SHARE * area[largest])
    )
    in_object = largest[owner[components]] == components
    return _Objects(
        mask=mask,
        readable=readable,
        pixels=pixels[in_object],
        halves=owner[components[in_object]],
    )


def _extent(occupied: np.ndarray) -> np.ndarray:
    """Return last - first + 1 of the True entries along axis 1, or 0 where there are none."""
    first = occupied.argmax(axis=1)
    last = occupied.shape[1] - 1 - occupied[:, ::-1].argmax(axis=1)
    return np.where(occupied[np.arange(occupied.shape[0]), first], last - first + 1, 0)


def _grow(mask: np.ndarray) -> np.ndarray:
    """Return mask (m, H, W) grown by one pixel in all eight directions."""
    tall = mask.copy()
    tall[:, 1:] |= mask[:, :-1]
    tall[:, :-1] |= mask[:, 1:]
    grown = tall.copy()
    grown[:, :, 1:] |= tall[:, :, :-1]
    grown[:, :, :-1] |= tall[:, :, 1:]
    return grown


def _read_shapes(strength: np.ndarray, objects: _Objects) -> np.ndarray:
    """Return each object's shape index (m,), NaN when unreadable or unlike every template."""
    distances = shape_distances(strength, objects.mask)
    best = distances.argmin(axis=1)
    nearest, second = np.sort(distances, axis=1)[:, :2].T
    recognized = (
        objects.readable
        & (nearest <= SHAPE_MAX_DISTANCE)
        & (nearest <= SHAPE_MAX_DISTANCE_RATIO * second)
    )
    return np.where(recognized, best, np.nan)


def shape_distances(strength: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the mean squared difference of each object from each template, (m, shapes).

    strength (m, H, W) contains the halves, and mask (m, H, W) each half's object (step 3).
    """
    m, height, width = strength.shape
    coverage = _coverage(strength, mask)
    row_mass = coverage.sum(axis=2)  # (m, H)
    column_mass = coverage.sum(axis=1)  # (m, W)
    mass = np.maximum(row_mass.sum(axis=1), 1e-6)
    # einsum rather than matrix products: multithreaded BLAS on arrays this small was
    # several times slower than one thread when other processes kept the cores busy.
    ys = np.arange(height, dtype=np.float32) + np.float32(0.5)
    xs = np.arange(width, dtype=np.float32) + np.float32(0.5)
    centre_y = np.einsum("ih,h->i", row_mass, ys) / mass
    centre_x = np.einsum("iw,w->i", column_mass, xs) / mass
    spread = np.einsum("ih,h->i", row_mass, ys * ys) + np.einsum("iw,w->i", column_mass, xs * xs)
    spread = spread / mass - centre_y**2 - centre_x**2
    gyration = np.sqrt(np.maximum(spread, 1e-6))

    samples = _sample_grid(coverage, centre_y, centre_x, gyration)  # (m, K * K)
    blur_levels, templates = shape_templates()  # (levels,), (levels, shapes, K * K)
    target_blur = np.log(PIXEL_BLUR / gyration)
    sharpest = np.abs(target_blur[:, None] - np.log(blur_levels)[None]).argmin(axis=1)
    # Squared distances as |sample|^2 - 2 sample . template + |template|^2.
    sample_norms = np.einsum("ik,ik->i", samples, samples)[:, None]
    template_norms = np.einsum("lsk,lsk->ls", templates, templates)
    distances = np.full((m, templates.shape[1]), np.inf, dtype=np.float32)
    for step in EXTRA_BLUR_STEPS:
        level = np.minimum(sharpest + step, blur_levels.size - 1)
        products = np.einsum("ik,isk->is", samples, templates[level])  # (m, shapes)
        np.minimum(distances, sample_norms - 2 * products + template_norms[level], out=distances)
    distances /= samples.shape[1]
    return distances


def _coverage(strength: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Estimate the coverage of each half's object from strength (m, H, W), as (m, H, W).

    Coverage is the strength of the object's pixels and of the one-pixel ring around them,
    which contains its anti-aliased rim, rescaled so that the background's mean strength is 0
    and the object's inside is 1, and clipped to [0, 1]. Noise raises the background's
    strength: by 0.045 on average at sigma 0.03. A faint object, such as a blurry sample's,
    has an inside below 1.
    """
    m, height, width = strength.shape
    grown = _grow(mask)
    coverage = np.where(grown, strength, np.float32(0.0))
    outside = np.maximum(height * width - grown.sum(axis=(1, 2)), 1)
    background = (strength.sum(axis=(1, 2)) - coverage.sum(axis=(1, 2))) / outside
    background = np.clip(background, 0.0, FOREGROUND_MIN_STRENGTH)

    # The inside: object pixels whose four neighbours are object pixels too, or the whole
    # object when it is too thin to have such pixels.
    inside = _shrink(mask)
    inside_pixels = inside.sum(axis=(1, 2))
    inside_strength = np.where(inside, strength, np.float32(0.0)).sum(axis=(1, 2))
    object_strength = np.where(mask, strength, np.float32(0.0)).sum(axis=(1, 2))
    level = np.where(
        inside_pixels > 0,
        inside_strength / np.maximum(inside_pixels, 1),
        object_strength / np.maximum(mask.sum(axis=(1, 2)), 1),
    )
    level = np.maximum(level, background + FOREGROUND_MIN_STRENGTH / 2)

    coverage -= background[:, None, None]
    coverage /= (level - background)[:, None, None]
    np.clip(coverage, 0.0, 1.0, out=coverage)
    return coverage


def _shrink(mask: np.ndarray) -> np.ndarray:
    """Return the pixels of mask (m, H, W) whose four neighbours are in mask too."""
    shrunk = mask.copy()
    shrunk[:, 1:] &= mask[:, :-1]
    shrunk[:, :-1] &= mask[:, 1:]
    shrunk[:, :, 1:] &= mask[:, :, :-1]
    shrunk[:, :, :-1] &= mask[:, :, 1:]
    shrunk[:, 0] = shrunk[:, -1] = False
    shrunk[:, :, 0] = shrunk[:, :, -1] = False
    return shrunk


def _sample_grid(
    values: np.ndarray, centre_y: np.ndarray, centre_x: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Sample values (m, H, W) bilinearly on each object's grid and return (m, K * K).

    Object i's grid points lie at centre + scale[i] * u for u in _grid(), in pixels with
    pixel j's value at its centre j + 0.5. Points outside the image read 0.
    """
    m, height, width = values.shape
    padded = np.zeros((m, height + 2, width + 2), dtype=values.dtype)
    padded[:, 1:-1, 1:-1] = values
    images = np.arange(m)[:, None]
    grid = _grid()
    # In the padded array a point p (in pixels) lies between index floor(p + 0.5) and the
    # next. Indices are clipped, and there the weights reach the zero padding.
    ys = centre_y[:, None] + scale[:, None] * grid + 0.5
    row = np.clip(np.floor(ys).astype(np.int64), 0, height)
    weight = np.clip(ys - row, 0.0, 1.0).astype(np.float32)[:, :, None]
    rows = padded[images, row] * (1 - weight) + padded[images, row + 1] * weight  # (m, K, W+2)

    xs = centre_x[:, None] + scale[:, None] * grid + 0.5
    column = np.clip(np.floor(xs).astype(np.int64), 0, width)
    weight = np.clip(xs - column, 0.0, 1.0).astype(np.float32)[:, None, :]
    left = np.take_along_axis(rows, column[:, None, :], axis=2)
    right = np.take_along_axis(rows, column[:, None, :] + 1, axis=2)
    sampled = left * (1 - weight) + right * weight  # (m, K, K)
    return sampled.reshape(m, -1)


def _grid() -> np.ndarray:
    """Return the grid's coordinates along one axis, in radii of gyration, float32 (K,)."""
    return np.linspace(-GRID_EXTENT, GRID_EXTENT, GRID_POINTS, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def shape_templates() -> tuple[np.ndarray, np.ndarray]:
    """Return BLUR_LEVELS and each shape's template at each, float32 (levels, shapes, K * K).

    A template is the shape's coverage, centred on its centroid and scaled by its radius
    of gyration, blurred by a Gaussian of the level's sigma in those units, and sampled at
    the grid's points. The result is read-only and cached.
    """
    resolution = 256
    # The raster reaches past the grid, so that the blur includes the whole shape.
    extent = GRID_EXTENT + 4 * float(BLUR_LEVELS[-1])
    raster = (np.arange(resolution) + 0.5) * (2 * extent / resolution) - extent
    # The Gaussian is separable: blurring and sampling along one axis is a (K, resolution)
    # matrix of weights per level, each row normalized to sum to 1.
    offsets = _grid()[None, :, None] - raster[None, None, :].astype(np.float32)
    weights = np.exp(-0.5 * (offsets / BLUR_LEVELS[:, None, None].astype(np.float32)) ** 2)
    weights /= weights.sum(axis=2, keepdims=True)  # (levels, K, resolution)
    templates = np.empty((BLUR_LEVELS.size, len(SHAPES), GRID_POINTS**2), dtype=np.float32)
    for index, name in enumerate(SHAPES):
        centre_x, centre_y, gyration = _shape_moments(name)
        y, x = np.meshgrid(
            raster * gyration + centre_y, raster * gyration + centre_x, indexing="ij"
        )
        coverage = inside_shape(name, x, y).astype(np.float32)
        # einsum rather than matrix products, for the reason given in _read_shapes.
        columns = np.einsum("lks,rs->lrk", weights, coverage)  # (levels, resolution, K)
        blurred = np.einsum("ljr,lrk->ljk", weights, columns)  # (levels, K, K)
        templates[:, index] = blurred.reshape(BLUR_LEVELS.size, -1)
    templates.flags.writeable = False
    return BLUR_LEVELS, templates


@functools.lru_cache(maxsize=len(SHAPES))
def _shape_moments(name: str) -> tuple[float, float, float]:
    """Return a shape's centroid (x, y) and radius of gyration, in units of its radius."""
    points = (np.arange(512) + 0.5) / 256 - 1.0
    y, x = np.meshgrid(points, points, indexing="ij")
    inside = inside_shape(name, x, y)
    centre_x, centre_y = x[inside].mean(), y[inside].mean()
    spread = ((x[inside] - centre_x) ** 2 + (y[inside] - centre_y) ** 2).mean()
    return float(centre_x), float(centre_y), float(np.sqrt(spread))


def _read_colours(images: np.ndarray, strength: np.ndarray, objects: _Objects) -> np.ndarray:
    """Return each object's colour index (m,), NaN when unreadable or far from every colour.

    images (n, H, 2 * half, 3) is the chunk, and strength (2n, H, half) contains its halves.
    """
    m, height, half = strength.shape
    weights = strength.reshape(-1)[objects.pixels]
    # A half's flat pixel index -> the image's flat pixel index.
    image, side = np.divmod(objects.halves, 2)
    row, column = np.divmod(objects.pixels % (height * half), half)
    colours = images.reshape(-1, 3)[(image * height + row) * 2 * half + side * half + column]

    weighted_strength = np.bincount(objects.halves, weights=weights * weights, minlength=m)
    ink = np.empty((m, 3))
    for channel in range(3):
        darkness = weights * (1.0 - colours[:, channel])
        ink[:, channel] = np.bincount(objects.halves, weights=darkness, minlength=m)
    ink /= np.maximum(weighted_strength, 1e-6)[:, None]
    distances = np.linalg.norm((1.0 - ink)[:, None, :] - COLOUR_RGB[None], axis=2)
    best = distances.argmin(axis=1)
    recognized = objects.readable & (distances[np.arange(m), best] <= COLOUR_MAX_DISTANCE)
    return np.where(recognized, best, np.nan)
