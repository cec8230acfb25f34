"""Read a pie's size, position, red share and number of colours from images, batch at a time.

The rule, applied to each image:

1. A pixel's ink is 1 minus its darkest channel, so white is 0 and every palette colour of
   `biaslab.datasets.pie` is 0.9. Disc pixels are those with ink above FOREGROUND_MIN_INK,
   half of 0.9, which puts the disc's border where the anti-aliased coverage crosses one
   half.
2. The disc's area A is its pixel count, its centre the mean of its pixel centres, and its
   radius sqrt(A / pi). Size is that radius and x and y the centre's offset from the image
   centre, all as fractions of the half width, on the scale of `biaslab.design.pie`.
3. The polar moment of the disc pixels about their centre, times 2 pi / A^2, is 1 for a
   disc and larger for every other shape of the same area: an ellipse, a ring, a blob
   beside the disc. The image is a readable pie when that ratio is at most
   MAX_POLAR_RATIO, the radius is at least MIN_RADIUS, and the disc lies inside the image
   (centre plus radius at most EDGE_SLACK_PIXELS past a border). Otherwise every feature
   is unrecognized (NaN).
4. A channel of a disc pixel is dark when its own ink exceeds DARK_INK_SHARE of the
   pixel's ink, and light when it stays below LIGHT_INK_SHARE of it. Palette channels have
   ink 0.1 or 0.9 times the disc's coverage, so these shares do not depend on the coverage
   and anti-aliased rim pixels keep their colour. A pixel has a palette colour when every
   channel is dark or light as that colour's are. Pixels with a channel between the two
   shares, or whose channels match no palette colour, are mixtures across a wedge border
   and belong to no colour. The band between the shares is centred where a pixel split
   evenly between two colours lies, so the two lose equally many pixels.
5. The red share is the mean red weight of the disc pixels. A pixel's channel inks,
   divided by the ink of the palette colours times the pixel's coverage, are linear in the
   shares of the colours mixed in it: each palette channel is either light (ink 0.1) or
   dark (0.9). With the shares summing to 1, that makes four equations whose solution gives
   each pixel's red share, border pixels included, so thin wedges are not biased. Pixels
   with ink of at least INTERIOR_MIN_INK count as fully covered. Dividing their channel
   inks by their own noisy ink instead would bias the share, because the darkest of
   several noisy channels is biased dark.
6. The colour count is the number of palette colours with at least MIN_WEDGE_PIXELS pixels
   (step 4). The red share and colour count are unrecognized when fewer than
   MIN_COLOURED_SHARE of the disc pixels have a palette colour, as in blurry samples whose
   wedges run into each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from biaslab.datasets.pie import DARK_CHANNEL, PALETTE

# Rendered palette colours have ink 0.9, so a disc pixel passes at coverage above one half.
# The renderer's noise stays within 5.8 sigma, 0.17 at sigma 0.03, so its background never
# passes.
FOREGROUND_MIN_INK = 0.45
PALETTE_INK = 1.0 - DARK_CHANNEL
# Renders measured at most 1.002 at 32x32 and 1.0002 at 64x64 (4,000 each, noise 0.03), and
# Gaussian-blurred renders at most 1.02 (blur sigma up to 3 px at 32x32). An ellipse's ratio
# is (a/b + b/a) / 2, so this rejects ellipses longer than 1.37 times their width.
MAX_POLAR_RATIO = 1.05
# Half the smallest rendered radius (0.40 of the half width).
MIN_RADIUS = 0.2
# Rendered discs at most touch a border (offset 0.2 plus radius 0.8 of the half width), and
# the radius from the pixel count errs by well under a pixel.
EDGE_SLACK_PIXELS = 1.0
# Pixels at least this dark are taken as fully covered by the disc: rendered coverage above
# 0.89. Noise of sigma 0.03 takes a fully covered pixel (ink 0.9) below it with a chance
# of at most 4e-4 (3.3 sigma, for yellow, whose ink comes from one dark channel).
INTERIOR_MIN_INK = 0.8
# Palette channels have ink 0.1 or 0.9 times the coverage: 1/9 or all of the pixel's ink. A
# pixel split evenly between two colours has channels at 5/9, and the band around it keeps
# such border pixels out of both colours even when noise of 0.03 moves their channels.
DARK_INK_SHARE = 2 / 3
LIGHT_INK_SHARE = 4 / 9
# NOTE: at 32x32 a pie of 4 colours, red value 9 and size 1 or 2 has wedges of 3.3% of a
# disc of 128-163 pixels, and one of them often keeps fewer pixels than this. That case
# caused all 29 colour-count misses among 8,000 renders of 4 colours (noise 0.03).
MIN_WEDGE_PIXELS = 2
# Renders keep nearly all disc pixels coloured. Gaussian-blurred renders fall below this
# share in 8% of images at blur sigma 3 px at 32x32 and in none up to 2 px.
MIN_COLOURED_SHARE = 0.5

# Pixels per thread task, which keeps each float32 temporary at 128 KiB. With twice that
# (16 images of 64x64), temporaries came from fresh memory on every call: 10-40 page faults
# per image and 1.3-2.5 times the CPU time (glibc malloc, 2 vCPUs under load).
_CHUNK_PIXELS = 32_768
_MAX_THREADS = 4
# Colours in the order of the probe's counts: red first.
_PROBED_COLOURS = ("red", *(name for name in PALETTE if name != "red"))


@dataclass(frozen=True)
class PieReading:
    """Features read from each image: float64 (N,) arrays, NaN where unrecognized.

    Sizes and offsets are fractions of the half width, as in `biaslab.design.pie`.
    """

    size: np.ndarray
    x: np.ndarray
    y: np.ndarray
    red_share: np.ndarray
    colours: np.ndarray


def read_pies(images: np.ndarray) -> PieReading:
    """Read the pie in each of (N, H, W, 3) images, float in [0, 1] or uint8.

    The module docstring states the rule. Raises ValueError for a batch of another shape.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    n = images.shape[0]
    result = np.full((5, n), np.nan)
    chunk = max(1, _CHUNK_PIXELS // (images.shape[1] * images.shape[2]))
    starts = range(0, n, chunk)
    offsets = _pixel_offsets(images.shape[1])
    codes = _colour_codes()
    red_coefficients = _red_weight_coefficients()

    def read_chunk(index: int) -> None:
        rows = slice(starts[index], starts[index] + chunk)
        result[:, rows] = _read_chunk(images[rows], offsets, codes, red_coefficients)

    _run_in_threads(read_chunk, len(starts))
    size, x, y, red_share, colours = result
    return PieReading(size=size, x=x, y=y, red_share=red_share, colours=colours)


def _pixel_offsets(width: int) -> np.ndarray:
    """Return float64 (W,): pixel centres' offsets from the image centre, in pixels."""
    return np.arange(width, dtype=np.float64) + 0.5 - width / 2


def _colour_codes() -> np.ndarray:
    """Return bool (colours, 3): the channels that each palette colour darkens, red first."""
    ink = 1.0 - np.array([PALETTE[name] for name in _PROBED_COLOURS])
    return ink >= DARK_INK_SHARE * ink.max(axis=1, keepdims=True)


def _red_weight_coefficients() -> np.ndarray:
    """Return float32 (4,): c with a pixel's red share = c . channel inks / full ink + c[3].

    `full ink` is the ink of a palette colour times the pixel's coverage. Each palette
    channel's ink over the colour's ink is either `light` or 1. So in a mixture of palette
    colours, (channel ink / full ink - light) / (1 - light) is the summed share of the
    colours that darken that channel. With the shares summing to 1, this makes four linear
    equations in the four shares, which the palette's codes solve.
    """
    ink = 1.0 - np.array([PALETTE[name] for name in _PROBED_COLOURS])
    normalized = ink / ink.max(axis=1, keepdims=True)
    light = normalized.min()
    codes = _colour_codes().astype(np.float64)
    system = np.vstack([codes.T, np.ones(codes.shape[0])])  # (4 equations, colours)
    red_row = np.linalg.inv(system)[0]  # red share = red_row . (channel shares..., 1)
    scale = red_row[:3] / (1.0 - light)
    constant = red_row[3] - light * scale.sum()
    return np.array([*scale, constant], dtype=np.float32)


def _read_chunk(
    images: np.ndarray, offsets: np.ndarray, codes: np.ndarray, red_coefficients: np.ndarray
) -> np.ndarray:
    """Apply the rule to (n, H, W, 3) images and return float64 (5, n) readings."""
    n, height, width, _ = images.shape
    planes = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(n, 3, height * width))
    planes = planes.astype(np.float32, copy=False)
    if images.dtype == np.uint8:
        planes *= np.float32(1 / 255)
    red, green, blue = planes[:, 0], planes[:, 1], planes[:, 2]

    # Step 1: disc pixels by ink.
    darkest = np.minimum(red, green)
    np.minimum(darkest, blue, out=darkest)
    disc = darkest < np.float32(1.0 - FOREGROUND_MIN_INK)

    # Steps 2 and 3: area, centre and polar moment from the disc's row and column counts.
    # Plain reductions, because a matrix product would start BLAS threads in every chunk.
    square = disc.reshape(n, height, width)
    column_counts = np.count_nonzero(square, axis=1).astype(np.float64)  # (n, W)
    row_counts = np.count_nonzero(square, axis=2).astype(np.float64)  # (n, H)
    area = column_counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre_x = (column_counts * offsets).sum(axis=1) / area
        centre_y = (row_counts * offsets).sum(axis=1) / area
        polar = (column_counts * offsets**2).sum(axis=1) + (row_counts * offsets**2).sum(axis=1)
        polar -= area * (centre_x**2 + centre_y**2)
        polar_ratio = 2 * np.pi * polar / area**2
    half = width / 2
    radius = np.sqrt(area / np.pi)
    inside = (np.abs(centre_x) + radius <= half + EDGE_SLACK_PIXELS) & (
        np.abs(centre_y) + radius <= half + EDGE_SLACK_PIXELS
    )
    readable = (radius >= MIN_RADIUS * half) & (polar_ratio <= MAX_POLAR_RATIO) & inside

    # Steps 4 and 5: each disc pixel's colour from its dark and light channels. A channel
    # is dark when 1 - value > share * (1 - darkest), that is value < 1 - share * (1 - darkest).
    ink = darkest
    np.subtract(np.float32(1.0), darkest, out=ink)
    dark_below = np.float32(1.0) - np.float32(DARK_INK_SHARE) * ink
    light_above = np.float32(1.0) - np.float32(LIGHT_INK_SHARE) * ink
    dark = [channel < dark_below for channel in (red, green, blue)]
    light = [channel > light_above for channel in (red, green, blue)]
    counts = np.empty((codes.shape[0], n), dtype=np.int64)
    for index, code in enumerate(codes):
        member = disc.copy()
        for channel in range(3):
            member &= dark[channel] if code[channel] else light[channel]
        counts[index] = np.count_nonzero(member, axis=1)
    coloured = counts.sum(axis=0)
    colour_readable = readable & (coloured >= MIN_COLOURED_SHARE * area)
    colour_count = (counts >= MIN_WEDGE_PIXELS).sum(axis=0)

    # Step 5: the mean red weight of the disc pixels. Off the disc, ink may be 0, which the
    # floor on the full ink keeps finite.
    red_weight = red * red_coefficients[0]
    red_weight += green * red_coefficients[1]
    red_weight += blue * red_coefficients[2]
    # c . (1 - value) = c.sum() - c . value
    np.subtract(red_coefficients[:3].sum(), red_weight, out=red_weight)
    full_ink = np.maximum(ink, np.float32(FOREGROUND_MIN_INK))
    np.putmask(full_ink, ink >= np.float32(INTERIOR_MIN_INK), np.float32(PALETTE_INK))
    red_weight /= full_ink
    red_weight += red_coefficients[3]
    with np.errstate(divide="ignore", invalid="ignore"):
        red_share = np.where(disc, red_weight, np.float32(0.0)).sum(axis=1) / area

    readings = np.stack(
        [radius / half, centre_x / half, centre_y / half, red_share, colour_count]
    ).astype(np.float64)
    readings[:3, ~readable] = np.nan
    readings[3:, ~colour_readable] = np.nan
    return readings


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
