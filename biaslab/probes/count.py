"""Count the dots in images by labelling connected components.

The rule, applied to each image:

1. Darkness is 3 * 255 minus the sum of the three 8-bit channels, so white is 0. The
   smoothed darkness is its sum over each pixel's 3x3 neighbourhood.
2. Foreground pixels have a smoothed darkness above FOREGROUND_MIN_DARKNESS. Foreground
   components use 8-connectivity.
3. Core pixels are foreground pixels darker than CORE_MIN_DARKNESS whose colour differs
   from each of their four neighbours by at most CORE_MAX_COLOUR_STEP in every channel.
   A dot's inside has one colour, so its core is the dot minus its anti-aliased rim. Two
   dots whose rims touch get separate cores because their colours differ. Cores are
   4-connected components of core pixels.
4. A core is a dot's core when it has at least CORE_MIN_PIXELS pixels and covers at least
   max(CORE_MIN_AREA, 1 - FAINT_CORE_SLOPE * its mean darkness) of a dot's area. Smaller
   cores are rim fragments and do not count.
5. Each foreground component contains as many dots as it has dot cores, or one dot when it
   has none. Its darkness mass must match the mass these dots predict, within
   MASS_RATIO_RANGE: a dot's area times its core's mean darkness, per core, or a dot's
   area times the component's darkest pixel when there is no core. An anti-aliased dot's
   mass is its area times its darkness whatever its colour, and smoothing keeps mass, so
   the test holds for faint and dark dots alike.

6. A component that fails step 5 gets a second reading, for blurry images such as a VAE's
   decoder means. A ghost, whose darkest pixel is below GHOST_MAX_RELATIVE_PEAK of the
   image's darkest pixel, is dropped. Otherwise its blobs are its 8-connected pixels at
   least BLOB_LEVEL as dark as its darkest pixel. Blurring keeps a dot's half-height contour
   near its radius. The component contains one dot per blob when every blob covers
   BLOB_AREA_RANGE of a dot's area and is at most BLOB_MAX_ELONGATION times as long as wide,
   and when no local maximum of the smoothed darkness darker than a ghost lies outside the
   blobs (a fainter dot hidden in a darker dot's tail). Otherwise the component fails.

The count is the sum of dots over the foreground components. An image is UNRECOGNIZED when
it has no foreground or when any component fails step 6: a speck, a smear or streak, a
blurred blob that is not the size of one dot, or overlapping dots that share one core.
Two overlapping dots of one colour are unrecognized when their centres are 0.7 to 1.4 radii
apart. Closer pairs pass as one dot, and pairs 1.8 radii or more apart can keep two cores
and count as two. Overlapping dots of different colours count as two when each keeps a core
and the mass adds up.

Rendered dots need a radius of about 2.5 pixels or more (0.08 of the width at 32x32) to
keep a core. Smaller dots are counted by step 5's fallback only while they do not touch,
and step 6 is skipped for them.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from biaslab.analysis.histogram import UNRECOGNIZED
from biaslab.images import to_uint8

logger = logging.getLogger(__name__)

# Darkness thresholds are on the mean-over-channels scale in [0, 1]. Rendered dots reach at
# least 0.1, because every channel stays at or below 0.9. The background of a noisy render
# (Gaussian sigma 0.03, reflected at 1) averages 0.024 with a standard deviation of 0.010.

# Smoothed over 3x3 pixels, the background's standard deviation drops to 0.0035, so 0.05 is
# 7 deviations above its mean, while the faintest dot's inside stays at 0.1.
# NOTE: fixed for noise up to 0.03. At noise 0.04, 69-91% of renders are counted exactly,
# and from 0.05 up the background itself passes and nearly every image is unrecognized.
FOREGROUND_MIN_DARKNESS = 0.05
# Unsmoothed, core pixels must be this dark too. This drops the white pixels next to a dot
# that smoothing pulls into the foreground, and keeps the faintest dots (0.1).
CORE_MIN_DARKNESS = 0.05
# Largest step per channel between neighbouring pixels of one core. The difference of two
# pixels with noise of sigma 0.03 has a sigma of 0.042, so 0.2 is 4.7 sigma. Steps between
# the colours of two touching dots, or across a dark dot's rim, are mostly larger.
CORE_MAX_COLOUR_STEP = 0.2
# Measured on 2,000 images per setting (1-12 dots, radius 0.08, noise 0 and 0.03): dot cores
# have at least 4 pixels and cover at least 0.19 of a dot at 32x32 and 0.55 at 64x64. Rim
# fragments have at most 2 pixels, 0.10 and 0.02 of a dot.
CORE_MIN_PIXELS = 3
CORE_MIN_AREA = 0.15
# A faint dot's rim steps stay below CORE_MAX_COLOUR_STEP, so its core is nearly the whole
# dot. Measured minimum cover at 32x32 by mean darkness: 0.68 for 0.10-0.15, 0.39 for
# 0.15-0.20 and 0.29 for 0.20-0.25, all above 1 - 3.5 * darkness. Blurred dots leave faint
# arcs of 0.15-0.25 of a dot on their rims; this rule drops them instead of counting them.
FAINT_CORE_SLOPE = 3.5
# Single rendered dots measured mass ratios of 0.88-1.35 (0.1 and 99.9 percentiles over the
# same images). Two same-coloured dots whose centres are one radius apart give 1.6.
MASS_RATIO_RANGE = (0.6, 1.4)
# Step 6, for generated images. VAE samples are decoder means: blurred dots beside faint
# "ghost" dots and streaks where the model hedges between layouts. On 10,000 samples of the
# example study's final model (32x32, radius 0.08), component peaks relative to the image's
# darkest pixel spread evenly from 0.1 to 1, with no gap between ghosts and dots.
# A failed component fainter than this share of its image's darkest pixel is a ghost and is
# dropped. Blurred renders of 1-6 dots lost 0.1% of images to it at 0.2, and about 5% (one
# faint dot dropped, a count too low) at 0.4, so the bound stays low.
GHOST_MAX_RELATIVE_PEAK = 0.25
# A blurry dot is a blob of pixels at least this share of its component's darkest pixel.
# Blurring spreads a disk's edge but keeps its half-height contour near the radius. The
# half-peak area of single renders of radius 2.56 px, as a share of a dot's area (1st-99th
# percentile), was 0.87-1.02 at blur sigma 0.5 px, 0.78-1.02 at 1 px, 0.97-1.26 at 1.5 px
# and 1.17-1.60 at 2 px.
BLOB_LEVEL = 0.5
# A blob's area at BLOB_LEVEL, as a share of a dot's area. Two touching dots of one colour
# 0.7 radii apart cover 1.44 dots, so the top stays below that. VAE samples' dark blobs
# measured 0.58-1.17 (10th-90th percentile). Specks and ghost fragments fall below the floor.
BLOB_AREA_RANGE = (0.35, 1.3)
# Largest ratio of a blob's major to minor axis (from its second moments). Single blurred
# renders measured at most 1.43 (32x32 and 64x64, blur sigma up to 0.8 radii), while 10% of
# the VAE samples' blobs are streaks at least twice as long as wide.
BLOB_MAX_ELONGATION = 2.0
# Below this radius in pixels, measured accuracy on renders of 1-12 dots falls from above
# 99.5% (2.56 px: radius 0.08 at 32x32) to about 35% (1.92 px: radius 0.06 at 32x32).
MIN_RADIUS_PIXELS = 2.5

# Images per thread task: small enough that a chunk's arrays stay in cache.
_CHUNK_IMAGES = 64
_MAX_THREADS = 4
_LEVELS = 255


@dataclass(frozen=True)
class DotReading:
    """The dot count and the mean dot radius of each image."""

    counts: np.ndarray  # int64, (N,), UNRECOGNIZED (-1) where the image cannot be read
    # float64, (N,): mean dot radius as a fraction of the image width, NaN where unrecognized
    mean_radii: np.ndarray


def count_dots(images: np.ndarray, dot_radius: float | tuple[float, float]) -> np.ndarray:
    """Count the dots in each image, or return UNRECOGNIZED (-1) for it.

    images: (N, H, W, 3), float in [0, 1] or uint8. Returns int64 (N,) counts, UNRECOGNIZED
    when an image is empty or any component that is not a ghost cannot be read as dots.
    `dot_radius` is a fraction of the image width: one radius, or the (smallest, largest)
    radius that a dot may have. It sets the expected dot area. The module docstring states
    the rule.
    """
    return _read(images, dot_radius, read_sizes=False).counts


def read_dots(images: np.ndarray, dot_radius: float | tuple[float, float]) -> DotReading:
    """Count the dots in each image as count_dots does, and measure their mean radius.

    A dot's area is its component's darkness, less the image's background darkness, divided
    by the dot's darkness (its core's mean, or the component's darkest pixel without a core).
    A component of several dots shares its area equally among them. A blurry dot read by
    step 6 has the area of its blob. The radius is sqrt(area / pi).
    """
    return _read(images, dot_radius, read_sizes=True)


def _read(
    images: np.ndarray, dot_radius: float | tuple[float, float], *, read_sizes: bool
) -> DotReading:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    smallest, largest = _radius_bounds(dot_radius)

    width = images.shape[2]
    _warn_if_dots_too_small(width, smallest)
    areas = (np.pi * (smallest * width) ** 2, np.pi * (largest * width) ** 2)
    # Step 6 measures blob areas and shapes, which pixels cannot resolve for smaller dots.
    read_blurry = smallest * width >= MIN_RADIUS_PIXELS
    counts = np.empty(images.shape[0], dtype=np.int64)
    radius_sums = np.full(images.shape[0], np.nan)
    starts = range(0, images.shape[0], _CHUNK_IMAGES)

    def count_chunk(index: int) -> None:
        rows = slice(starts[index], starts[index] + _CHUNK_IMAGES)
        planes = np.ascontiguousarray(to_uint8(images[rows]).transpose(0, 3, 1, 2))
        counts[rows], radius_sums[rows] = _count_chunk(
            planes, areas, read_blurry=read_blurry, read_sizes=read_sizes
        )

    _run_in_threads(count_chunk, len(starts))
    recognized = counts != UNRECOGNIZED
    mean_radii = np.full(counts.size, np.nan)
    mean_radii[recognized] = radius_sums[recognized] / counts[recognized] / width
    return DotReading(counts=counts, mean_radii=mean_radii)


def _radius_bounds(dot_radius: float | tuple[float, float]) -> tuple[float, float]:
    """Return (smallest, largest) radius from one radius or a range, checking both."""
    if isinstance(dot_radius, np.ndarray):
        dot_radius = dot_radius.tolist()  # a float, or a list of them
    if isinstance(dot_radius, tuple | list):
        if len(dot_radius) != 2 or not 0 < dot_radius[0] <= dot_radius[1] < 0.5:
            raise ValueError(
                "dot_radius must be one radius or (smallest, largest) in (0, 0.5) of the image "
                f"width, got {dot_radius}"
            )
        return float(dot_radius[0]), float(dot_radius[1])
    if not 0 < dot_radius < 0.5:
        raise ValueError(f"dot_radius must lie in (0, 0.5) of the image width, got {dot_radius}")
    return dot_radius, dot_radius


@functools.lru_cache(maxsize=32)
def _warn_if_dots_too_small(width: int, dot_radius: float) -> None:
    """Log once per image width and radius when dots are too small to keep a core."""
    if dot_radius * width < MIN_RADIUS_PIXELS:
        logger.warning(
            "dot_radius %g in %d-pixel-wide images is %.2f px, below %.1f px: touching "
            "dots will be unrecognized, so expect a large unrecognized share",
            dot_radius,
            width,
            dot_radius * width,
            MIN_RADIUS_PIXELS,
        )


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


def _count_chunk(
    planes: np.ndarray, areas: tuple[float, float], *, read_blurry: bool, read_sizes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the rule to uint8 images (n, 3, H, W).

    `areas` are the smallest and largest dot area in pixels. Returns int64 counts (n,) and
    float64 sums of the dot radii in pixels (n,), NaN unless `read_sizes`.
    """
    n = planes.shape[0]
    smallest_area, largest_area = areas
    darkness = _darkness(planes)  # uint16 (n, H, W), 0..765
    smoothed = _box_sum(darkness)  # uint16 (n, H, W), 0..6885
    foreground = smoothed > _scaled(FOREGROUND_MIN_DARKNESS, pixels=9)
    core = foreground & (darkness > _scaled(CORE_MIN_DARKNESS, pixels=1))
    _keep_uniform_colour(core, planes)

    foreground_labels, n_foreground = _label(foreground, connectivity=8)
    core_labels, n_cores = _label(core, connectivity=4)

    # Flat indices of the pixels that matter: a few tenths of the image at most.
    foreground_pixels = np.flatnonzero(foreground)
    core_pixels = np.flatnonzero(core)
    darkness_flat = darkness.reshape(-1)
    foreground_flat = foreground_labels.reshape(-1)

    # Per foreground component: the darkest pixel.
    in_component = foreground_flat.take(foreground_pixels)
    peak = np.zeros(n_foreground + 1, dtype=np.uint16)
    np.maximum.at(peak, in_component, darkness_flat.take(foreground_pixels))

    # Per core: area, mean darkness and the foreground component that contains it. A core
    # must cover its share of the smallest dot.
    core_ids = core_labels.reshape(-1).take(core_pixels)
    core_area = np.bincount(core_ids, minlength=n_cores + 1)
    darkness_sum = np.bincount(
        core_ids, weights=darkness_flat.take(core_pixels), minlength=n_cores + 1
    )
    core_darkness = darkness_sum / np.maximum(core_area, 1)
    core_component = np.zeros(n_cores + 1, dtype=np.int64)
    core_component[core_ids] = foreground_flat.take(core_pixels)
    min_share = np.maximum(CORE_MIN_AREA, 1 - FAINT_CORE_SLOPE * core_darkness / (3 * _LEVELS))
    is_dot_core = (core_area >= min_share * smallest_area) & (core_area >= CORE_MIN_PIXELS)
    is_dot_core[0] = False

    # Per foreground component: dots, and the darkness mass they predict at the smallest and
    # at the largest dot area. Smoothed values are 9-pixel sums, so predictions are scaled
    # by 9 to match.
    components = core_component[is_dot_core]
    cores_in = np.bincount(components, minlength=n_foreground + 1)
    coreless = cores_in == 0
    predicted = []
    for area in sorted(set(areas)):
        weights = 9 * area * core_darkness[is_dot_core]
        prediction = np.bincount(components, weights=weights, minlength=n_foreground + 1)
        prediction[coreless] = 9 * area * peak[coreless]
        predicted.append(prediction)
    dots = np.maximum(cores_in, 1)

    mass = np.bincount(
        in_component,
        weights=smoothed.reshape(-1).take(foreground_pixels),
        minlength=n_foreground + 1,
    )
    low, high = MASS_RATIO_RANGE
    failed = (mass < low * predicted[0]) | (mass > high * predicted[-1])
    dots[0] = 0
    failed[0] = False

    # The image of each component.
    owner = np.zeros(n_foreground + 1, dtype=np.int64)
    owner[in_component] = foreground_pixels // darkness[0].size

    radius_sum = np.full(n_foreground + 1, np.nan)
    if read_sizes:
        radius_sum = dots * _dot_radius_in_pixels(
            darkness,
            foreground_pixels,
            in_component,
            owner,
            dots,
            coreless,
            np.bincount(components, weights=core_darkness[is_dot_core], minlength=n_foreground + 1),
            peak,
        )

    # Components that fail the mass test get a second reading as blurry dots (step 6).
    # Only chunks with such a component pay for it. At radii below MIN_RADIUS_PIXELS it
    # turned 2-4% of renders of 1-12 dots (radius 0.04 and 0.06 at 32x32) into miscounts.
    if read_blurry and failed.any():
        image_peak = darkness.reshape(n, -1).max(axis=1)
        _read_blurry_components(
            failed,
            dots,
            radius_sum,
            peak,
            smoothed,
            image_peak[owner],
            foreground_labels,
            darkness,
            areas,
        )
    count = _sum_per_image(dots, owner, n)
    failures = _sum_per_image(failed, owner, n)
    radii = np.full(n, np.nan)
    if read_sizes:
        radii = _sum_per_image(np.where(dots > 0, radius_sum, 0.0), owner, n)
    return np.where((count == 0) | (failures > 0), UNRECOGNIZED, count), radii


def _dot_radius_in_pixels(
    darkness: np.ndarray,
    foreground_pixels: np.ndarray,
    in_component: np.ndarray,
    owner: np.ndarray,
    dots: np.ndarray,
    coreless: np.ndarray,
    core_darkness_sum: np.ndarray,
    peak: np.ndarray,
) -> np.ndarray:
    """Return each component's dot radius in pixels, with its dots taken as equal in size.

    A component of k dots of area A and darknesses d_i over a background of darkness b has
    the summed darkness S = A * sum(d_i) + b * (N - k * A) over its N pixels, which gives A.
    The background darkness is each image's mean outside the foreground.
    """
    n, height, width = darkness.shape
    n_labels = dots.size
    pixels = np.bincount(in_component, minlength=n_labels).astype(np.float64)
    summed = np.bincount(
        in_component, weights=darkness.reshape(-1).take(foreground_pixels), minlength=n_labels
    )
    image_total = darkness.reshape(n, -1).sum(axis=1, dtype=np.int64).astype(np.float64)
    outside_total = image_total - _sum_per_image(summed, owner, n)
    outside_pixels = height * width - _sum_per_image(pixels, owner, n)
    background = (outside_total / np.maximum(outside_pixels, 1))[owner]

    dot_darkness = np.where(coreless, peak, core_darkness_sum)
    contrast = np.maximum(dot_darkness - dots * background, 1e-9)
    area = np.maximum(summed - background * pixels, 0.0) / contrast
    return np.sqrt(area / np.pi)


def _scaled(darkness: float, *, pixels: int) -> int:
    """Convert a mean-over-channels darkness to the integer scale of a sum over pixels."""
    return int(round(darkness * 3 * _LEVELS * pixels))


def _darkness(planes: np.ndarray) -> np.ndarray:
    total = planes[:, 0].astype(np.uint16)
    total += planes[:, 1]
    total += planes[:, 2]
    return np.subtract(np.uint16(3 * _LEVELS), total, out=total)


def _box_sum(values: np.ndarray) -> np.ndarray:
    """Sum each pixel's 3x3 neighbourhood, with zeros (white) outside the image."""
    n, height, width = values.shape
    padded = np.zeros((n, height + 2, width + 2), dtype=values.dtype)
    padded[:, 1:-1, 1:-1] = values
    rows = padded[:, :-2] + padded[:, 1:-1]
    rows += padded[:, 2:]
    total = rows[:, :, :-2] + rows[:, :, 1:-1]
    total += rows[:, :, 2:]
    return total


def _keep_uniform_colour(core: np.ndarray, planes: np.ndarray) -> None:
    """Clear core pixels whose colour steps by more than CORE_MAX_COLOUR_STEP to a neighbour."""
    step = np.uint8(round(CORE_MAX_COLOUR_STEP * _LEVELS))
    for axis in (2, 3):  # rows, then columns of (n, 3, H, W)
        before = [slice(None)] * 4
        after = [slice(None)] * 4
        before[axis] = slice(None, -1)
        after[axis] = slice(1, None)
        # |a - b| <= step  <=>  (a - b + step) mod 256 <= 2 * step, in wrapping uint8.
        shifted = planes[tuple(after)] - planes[tuple(before)]
        shifted += step
        small = shifted <= 2 * step  # (n, 3, ...) with one fewer pixel along axis
        same = small[:, 0] & small[:, 1]
        same &= small[:, 2]
        core[tuple(after[:1] + after[2:])] &= same
        core[tuple(before[:1] + before[2:])] &= same


def _sum_per_image(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Sum values over the components of each of n images, leaving out values[0], the background.

    `owner` is the image of each label. Integer and boolean values give int64 sums, floating-point
    values float64 sums.
    """
    sums = np.bincount(owner[1:], weights=values[1:], minlength=n)
    return sums if np.issubdtype(values.dtype, np.floating) else sums.astype(np.int64)


def _label(mask: np.ndarray, *, connectivity: int) -> tuple[np.ndarray, int]:
    """Label the connected components of each image of mask (n, H, W), bool.

    Returns int32 labels (n, H, W), 0 outside every component, and the number of components.
    `connectivity` is 4 or 8. OpenCV labels the stack as one tall image, with a blank row
    below each image so that no component spans two images. On 64x64 renders this took a
    third of the time of scipy.ndimage.label (measured, see docs/benchmarks.md).
    """
    n, height, width = mask.shape
    tall = np.zeros((n, height + 1, width), dtype=np.uint8)
    tall[:, :height] = mask
    n_labels, labels = cv2.connectedComponents(
        tall.reshape(-1, width), connectivity=connectivity, ltype=cv2.CV_32S
    )
    return np.ascontiguousarray(labels.reshape(n, height + 1, width)[:, :height]), n_labels - 1


def _read_blurry_components(
    failed: np.ndarray,
    dots: np.ndarray,
    radius_sum: np.ndarray,
    peak: np.ndarray,
    smoothed: np.ndarray,
    image_peak: np.ndarray,
    foreground_labels: np.ndarray,
    darkness: np.ndarray,
    areas: tuple[float, float],
) -> None:
    """Apply step 6 to the components marked in `failed`, updating them in place.

    failed, dots, radius_sum (the sum of the dot radii in pixels), peak (the darkest pixel)
    and image_peak (the darkest pixel of the component's image) are indexed by component
    label. darkness and smoothed are (n, H, W). `areas` are the smallest and largest dot area.
    """
    ghost = failed & (peak < GHOST_MAX_RELATIVE_PEAK * image_peak)
    dots[ghost] = 0
    failed[ghost] = False
    candidate = failed
    if not candidate.any():
        return

    # Blobs: pixels of a candidate component at least half as dark as its darkest pixel.
    labels_flat = foreground_labels.reshape(-1)
    pixels = np.flatnonzero(candidate.take(labels_flat))
    owners = labels_flat.take(pixels)
    level = peak.take(owners).astype(np.float64) * BLOB_LEVEL
    above = pixels[darkness.reshape(-1).take(pixels) >= level]
    mask = np.zeros(darkness.shape, dtype=bool)
    mask.reshape(-1)[above] = True
    blob_labels, n_blobs = _label(mask, connectivity=8)

    blob_ids = blob_labels.reshape(-1).take(above)
    blob_area = np.bincount(blob_ids, minlength=n_blobs + 1)
    blob_component = np.zeros(n_blobs + 1, dtype=np.int64)
    blob_component[blob_ids] = labels_flat.take(above)
    low, high = BLOB_AREA_RANGE
    not_a_dot = (blob_area < low * areas[0]) | (blob_area > high * areas[1])
    not_a_dot |= _elongation(above, blob_ids, n_blobs, darkness.shape[1:]) > BLOB_MAX_ELONGATION
    not_a_dot[0] = False

    # A local maximum of the smoothed darkness outside every blob, darker than a ghost, is a
    # fainter dot hidden in the tail of a darker one, so the component cannot be read.
    darker_than_ghost = pixels[
        darkness.reshape(-1).take(pixels) >= GHOST_MAX_RELATIVE_PEAK * image_peak.take(owners)
    ]
    neighbourhood_max = _max_of_neighbourhood(smoothed).take(darker_than_ghost)
    is_local_max = smoothed.take(darker_than_ghost) >= neighbourhood_max
    hidden = darker_than_ghost[is_local_max & ~mask.reshape(-1).take(darker_than_ghost)]
    hidden_in = np.bincount(labels_flat.take(hidden), minlength=dots.size)

    blobs_in = np.bincount(blob_component[1:], minlength=dots.size)
    odd_in = np.bincount(blob_component[1:], weights=not_a_dot[1:], minlength=dots.size)
    readable = candidate & (blobs_in > 0) & (odd_in == 0) & (hidden_in == 0)
    dots[readable] = blobs_in[readable]
    failed[readable] = False
    # A blurred dot's half-peak contour stays near its edge, so a blob's area is its dot's.
    blob_radii = np.sqrt(blob_area[1:] / np.pi)
    radius_sum[readable] = np.bincount(blob_component[1:], weights=blob_radii, minlength=dots.size)[
        readable
    ]


def _max_of_neighbourhood(values: np.ndarray) -> np.ndarray:
    """Return the maximum of each pixel's 3x3 neighbourhood within its image, (n, H, W)."""
    return ndimage.maximum_filter(values, size=(1, 3, 3), mode="nearest")


def _elongation(
    pixels: np.ndarray, blob_ids: np.ndarray, n_blobs: int, image_shape: tuple[int, ...]
) -> np.ndarray:
    """Return each blob's major to minor axis ratio from its second moments, (n_blobs + 1,).

    `pixels` are flat indices into (n, H, W) and `blob_ids` their blob labels. Each pixel
    counts as a unit square, which adds 1/12 to both variances, so a one-pixel line stays
    finite.
    """
    height, width = image_shape
    rows = (pixels // width % height).astype(np.float64)
    columns = (pixels % width).astype(np.float64)
    area = np.maximum(np.bincount(blob_ids, minlength=n_blobs + 1), 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(blob_ids, weights=values, minlength=n_blobs + 1) / area

    mean_row, mean_column = mean(rows), mean(columns)
    var_row = mean(rows * rows) - mean_row**2 + 1 / 12
    var_column = mean(columns * columns) - mean_column**2 + 1 / 12
    covariance = mean(rows * columns) - mean_row * mean_column
    half_sum = (var_row + var_column) / 2
    spread = np.sqrt(((var_row - var_column) / 2) ** 2 + covariance**2)
    return np.sqrt((half_sum + spread) / np.maximum(half_sum - spread, 1e-12))
