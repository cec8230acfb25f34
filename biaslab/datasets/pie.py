"""Images of one disc split into coloured wedges on a white background, rendered batch at a time.

Pixel (i, j) covers [j, j + 1) x [i, i + 1), so a 64x64 image spans [0, 64] on both axes and
its half width is 32. Feature values 1..9 map linearly onto the ranges in
`biaslab.design.pie`: the disc's radius, its centre's offset from the image centre, and the
red wedge's share of the disc.

Wedges run clockwise on screen from a start angle, in the order of `wedge_colours`: red
first, then the other colours, which split the rest of the disc equally. The disc's edge and
the borders between wedges are anti-aliased with a linear ramp one pixel wide, so a wedge's
summed coverage equals its share of the disc's area up to pixel rounding. Noise is Gaussian,
added to the white background before the disc is drawn, then reflected at 0 and 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# The dots renderer's noise helpers, so that noise means the same in every family.
from biaslab.datasets.noise import fill_with_noise, reflect_into_unit_interval
from biaslab.design.pie import (
    MAX_COLOURS,
    MAX_VALUE,
    MIN_VALUE,
    OFFSET_RANGE,
    RANDOM_VALUE,
    RED_SHARE_RANGE,
    SIZE_RANGE,
    PieDataset,
)

# Every channel of every colour is DARK_CHANNEL or LIGHT_CHANNEL, and each colour darkens
# a different set of channels, which is how the pie probe distinguishes them. Every colour's
# ink (1 minus its darkest channel) is 0.9, so a probe finds the disc by ink alone.
DARK_CHANNEL = 0.1
LIGHT_CHANNEL = 0.9
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (LIGHT_CHANNEL, DARK_CHANNEL, DARK_CHANNEL),
    "blue": (DARK_CHANNEL, DARK_CHANNEL, LIGHT_CHANNEL),
    "green": (DARK_CHANNEL, LIGHT_CHANNEL, DARK_CHANNEL),
    "yellow": (LIGHT_CHANNEL, LIGHT_CHANNEL, DARK_CHANNEL),
}
WEDGE_ORDER = ("red", "blue", "green", "yellow")
# The first wedge's start angle when the rotation is not random: 12 o'clock. Angles follow
# atan2(row offset, column offset), so they grow clockwise on screen.
FIXED_START_ANGLE = -np.pi / 2

# Images per thread task. A thread takes the GIL back after each numpy call, so two threads
# that make many short calls spend their time waiting for it. At 64x64, noise 0.03 and 4
# colours, batches of 1,024 rendered 8,188, 11,199, 13,559 and 12,489 images/s on 2 threads
# in chunks of 16, 32, 64 and 128 images.
_CHUNK_IMAGES = 64
_MAX_THREADS = 4


def quantity_of_value(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Return the quantities that feature values 1..9 set, linear in `value_range`."""
    low, high = value_range
    return low + (np.asarray(values, dtype=np.float64) - MIN_VALUE) * (high - low) / (
        MAX_VALUE - MIN_VALUE
    )


def value_of_quantity(quantities: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Return the feature values (1..9 scale, not rounded) of quantities in `value_range`."""
    low, high = value_range
    return MIN_VALUE + (np.asarray(quantities, dtype=np.float64) - low) * (
        MAX_VALUE - MIN_VALUE
    ) / (high - low)


def wedge_colours(colours: int) -> tuple[str, ...]:
    """Return the names of a pie's wedge colours in drawing order; red first unless colours is 1."""
    if not 1 <= colours <= MAX_COLOURS:
        raise ValueError(f"colours must lie in 1..{MAX_COLOURS}, got {colours}")
    if colours == 1:
        return (WEDGE_ORDER[1],)
    return WEDGE_ORDER[:colours]


def draw_pie_values(design: PieDataset, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return int64 (n, 4) feature values (size, x, y, red) drawn from the design's entries.

    Entries are chosen with the design's weights, and each 0 becomes a value drawn uniformly
    from 1..9 for that image. One-colour pies have no red share, and their red column is 0.
    """
    table = np.array(
        [[size, x, y, RANDOM_VALUE if red is None else red] for size, x, y, red in design.values],
        dtype=np.int64,
    )
    rows = rng.choice(len(table), size=n, p=design.value_probabilities())
    values = table[rows]
    random_columns = 4 if design.colours > 1 else 3
    drawn = rng.integers(MIN_VALUE, MAX_VALUE + 1, size=(n, random_columns))
    columns = values[:, :random_columns]
    values[:, :random_columns] = np.where(columns == RANDOM_VALUE, drawn, columns)
    return values


def render_pies(
    values: np.ndarray,
    *,
    image_size: int,
    colours: int,
    noise: float,
    random_rotation: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one pie per row of `values` (size, x, y, red), as float32 (N, H, W, 3) in [0, 1].

    Values are 1..9; the red column is ignored when `colours` is 1. Start angles and noise
    come from `rng`. Work runs on threads in chunks of `_CHUNK_IMAGES` images, and the noise
    of each chunk comes from a generator seeded from `rng`, so the images do not depend on
    the number of threads.
    """
    values = np.asarray(values)
    _check_render_arguments(values, image_size, colours, noise)
    n = values.shape[0]
    half = image_size / 2
    radius = quantity_of_value(values[:, 0], SIZE_RANGE) * half
    centre_x = half + quantity_of_value(values[:, 1], OFFSET_RANGE) * half
    centre_y = half + quantity_of_value(values[:, 2], OFFSET_RANGE) * half
    red_share = quantity_of_value(values[:, 3], RED_SHARE_RANGE)
    start = np.full(n, FIXED_START_ANGLE)
    if random_rotation:
        start = np.asarray(rng.uniform(0.0, 2 * np.pi, size=n))
    firsts = range(0, n, _CHUNK_IMAGES)
    seeds = rng.integers(0, 2**63, size=len(firsts))
    # Discs of similar radius are drawn together, so each group draws in windows barely
    # larger than its discs instead of in whole images.
    order = np.argsort(radius, kind="stable")
    ink = _colour_ink(wedge_colours(colours))
    images = np.empty((n, image_size, image_size, 3), dtype=np.float32)

    def fill_chunk(index: int) -> None:
        chunk = images[firsts[index] : firsts[index] + _CHUNK_IMAGES]
        if noise > 0:
            fill_with_noise(chunk, noise, np.random.default_rng(seeds[index]))
        else:
            chunk.fill(1.0)

    def draw_group(index: int) -> None:
        rows = order[firsts[index] : firsts[index] + _CHUNK_IMAGES]
        _draw(images, rows, radius, centre_x, centre_y, red_share, start, ink)

    def reflect_chunk(index: int) -> None:
        reflect_into_unit_interval(images[firsts[index] : firsts[index] + _CHUNK_IMAGES], noise)

    # Pies are drawn onto the noisy background, then the sum is reflected into [0, 1].
    _run_in_threads(fill_chunk, len(firsts))
    _run_in_threads(draw_group, len(firsts))
    if noise > 0:
        _run_in_threads(reflect_chunk, len(firsts))
    return images


def _check_render_arguments(
    values: np.ndarray, image_size: int, colours: int, noise: float
) -> None:
    if values.ndim != 2 or values.shape[1] != 4:
        raise ValueError(f"values must have shape (N, 4) for (size, x, y, red), got {values.shape}")
    used = values if colours > 1 else values[:, :3]
    if used.size and (used.min() < MIN_VALUE or used.max() > MAX_VALUE):
        raise ValueError(
            f"values must lie in {MIN_VALUE}..{MAX_VALUE}, got {used.min()}..{used.max()}"
        )
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    if noise < 0:
        raise ValueError(f"noise must be at least 0, got {noise}")
    wedge_colours(colours)


def _colour_ink(names: tuple[str, ...]) -> np.ndarray:
    """Return float32 (wedges, 3): how much each wedge colour darkens white, per channel."""
    return 1.0 - np.array([PALETTE[name] for name in names], dtype=np.float32)


def _draw(
    images: np.ndarray,
    rows: np.ndarray,
    radius: np.ndarray,
    centre_x: np.ndarray,
    centre_y: np.ndarray,
    red_share: np.ndarray,
    start: np.ndarray,
    ink: np.ndarray,
) -> None:
    """Subtract the pies of `rows` from `images` (N, H, W, 3) in place, in square windows.

    The other arguments hold one entry per image of `images`. Lengths are in pixels, and
    `start` is each image's first wedge angle in radians.
    """
    image_size = images.shape[1]
    radius, centre_x, centre_y = radius[rows], centre_x[rows], centre_y[rows]
    # A pixel's coverage is clip(radius + 0.5 - distance, 0, 1), so a disc reaches pixels
    # out to radius + 0.5 from its centre, and `patch` pixels span that.
    patch = min(image_size, int(np.ceil(2 * radius.max() + 2)))
    top = np.clip(np.floor(centre_y - radius - 0.5).astype(np.int64), 0, image_size - patch)
    left = np.clip(np.floor(centre_x - radius - 0.5).astype(np.int64), 0, image_size - patch)
    pixel_centres = np.arange(patch, dtype=np.float32) + np.float32(0.5)
    dx = pixel_centres + (left - centre_x).astype(np.float32)[:, None]  # (rows, patch)
    dy = pixel_centres + (top - centre_y).astype(np.float32)[:, None]  # (rows, patch)
    planes = _ink_planes(dx, dy, radius, red_share[rows], start[rows], ink)

    windows = sliding_window_view(images, (patch, patch), axis=(1, 2), writeable=True)
    window = windows[rows, top, left]  # a copy, (rows, 3, patch, patch)
    window -= planes
    windows[rows, top, left] = window


def _ink_planes(
    dx: np.ndarray,
    dy: np.ndarray,
    radius: np.ndarray,
    red_share: np.ndarray,
    start: np.ndarray,
    ink: np.ndarray,
) -> np.ndarray:
    """Return float32 (n, 3, H, W): how much the pie darkens each pixel and channel.

    `dx` (n, W) and `dy` (n, H) are the pixel centres' offsets from each disc's centre.
    """
    # Distance from the centre, and the disc's coverage as a linear ramp across its edge.
    distance = dy[:, :, None] ** 2 + dx[:, None, :] ** 2  # (n, H, W)
    np.sqrt(distance, out=distance)
    coverage = radius.astype(np.float32)[:, None, None] + np.float32(0.5) - distance
    np.clip(coverage, 0.0, 1.0, out=coverage)
    wedges = ink.shape[0]
    if wedges == 1:
        return coverage[:, None] * ink[0][None, :, None, None]

    # Each wedge's first border as an angle past the start: red ends at 2 pi * red share,
    # and the other colours split the rest equally. The angles used below are measured from
    # `cut`, the middle of the last wedge, where no border lies, so every border falls
    # inside (0, 2 pi) with no wrap-around.
    share = (1.0 - red_share) / (wedges - 1)
    borders = 2 * np.pi * np.concatenate([np.zeros((share.size, 1)), red_share[:, None]], axis=1)
    borders = np.concatenate(
        [borders, borders[:, 1:2] + 2 * np.pi * share[:, None] * np.arange(1, wedges - 1)], axis=1
    )  # (n, wedges): the start of each wedge
    cut = 2 * np.pi * (1.0 - share / 2)  # the middle of the last wedge, past the start
    borders = (borders + 2 * np.pi - cut[:, None]).astype(np.float32)

    # Rotating the offsets by -(start + cut + pi) before atan2 puts the cut at -pi, so the
    # angle past the cut is atan2 + pi, in [0, 2 pi], with no slow floating-point modulo.
    turn = -(start + cut + np.pi)
    cos_turn = np.cos(turn).astype(np.float32)[:, None, None]
    sin_turn = np.sin(turn).astype(np.float32)[:, None, None]
    rotated_x = dx[:, None, :] * cos_turn - dy[:, :, None] * sin_turn
    rotated_y = dx[:, None, :] * sin_turn + dy[:, :, None] * cos_turn
    angle = np.arctan2(rotated_y, rotated_x, out=rotated_y)
    angle += np.float32(np.pi)

    # past[k] rises from 0 to 1 across border k, over one pixel measured along the arc
    # (distance times angle), and is weighted by the disc's coverage. Before border 0 and
    # after the last border a pixel has the last wedge's colour, and crossing border k
    # changes it from the colour of wedge k - 1 to that of wedge k.
    arc = distance * angle
    steps = ink - np.roll(ink, 1, axis=0)  # (wedges, 3): step k is ink[k] - ink[k - 1]
    planes = np.empty((dx.shape[0], 3) + distance.shape[1:], dtype=np.float32)
    for channel in range(3):
        np.multiply(coverage, ink[-1, channel], out=planes[:, channel])
    for k in range(wedges):
        past = distance * borders[:, k, None, None]
        np.subtract(arc, past, out=past)
        past += np.float32(0.5)
        np.clip(past, 0.0, 1.0, out=past)
        past *= coverage
        for channel in range(3):
            if steps[k, channel] != 0:
                planes[:, channel] += past * steps[k, channel]
    return planes


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
