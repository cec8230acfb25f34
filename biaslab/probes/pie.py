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

# Pixels per chunk on one thread: 16 images of 64x64, whose planes and temporaries take
# 2.3 MiB. Each thread allocates its buffers once per call and reuses them for every chunk.
# Temporaries allocated per chunk came from freshly mapped memory on every call once they
# exceeded 128 KiB (glibc malloc). On one thread, chunks of 32,768 and 131,072 pixels took up
# to 6% and 12% more CPU time (numpy 2.4, 2 vCPUs with 2 MiB of L2 cache each).
_CHUNK_PIXELS = 65_536
# Pixels per chunk on several threads: 64 images of 64x64. A thread's numpy calls on 16
# images were too short for the GIL handovers between threads, and two threads read 28,200
# 64x64 images/s against 31,700 on one. On 64 images two threads read 39,500 images/s, at 46
# instead of 32 microseconds of CPU time per image.
_THREAD_CHUNK_PIXELS = 262_144
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


@dataclass(frozen=True)
class _PixelSums:
    """Per-image sums over the pixels, from which `_read_sums` applies the rule.

    column_counts (N, W) and row_counts (N, H): disc pixels per column and row.
    colour_counts (colours, N): pixels of each palette colour, red first.
    weight_sums (N,): the sum of g, where g is 1 / full ink on disc pixels and 0 elsewhere.
    channel_sums (3, N): the sums of each channel's value times g.
    """

    column_counts: np.ndarray
    row_counts: np.ndarray
    colour_counts: np.ndarray
    weight_sums: np.ndarray
    channel_sums: np.ndarray


def read_pies(images: np.ndarray) -> PieReading:
    """Read the pie in each of (N, H, W, 3) images, float in [0, 1] or uint8.

    The module docstring states the rule. Raises ValueError for a batch of another shape.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    n, width = images.shape[0], images.shape[1]
    sums = _PixelSums(
        column_counts=np.empty((n, width), dtype=np.float32),
        row_counts=np.empty((n, width), dtype=np.float32),
        colour_counts=np.empty((len(_PROBED_COLOURS), n), dtype=np.int64),
        weight_sums=np.empty(n, dtype=np.float32),
        channel_sums=np.empty((3, n), dtype=np.float32),
    )
    threads = _thread_count(-(-n // max(1, _THREAD_CHUNK_PIXELS // (width * width))))
    chunk = max(1, (_THREAD_CHUNK_PIXELS if threads > 1 else _CHUNK_PIXELS) // (width * width))
    chunks = -(-n // chunk)
    # Each thread sums a run of whole chunks with its own buffers.
    bounds = [min(n, chunk * (chunks * part // threads)) for part in range(threads + 1)]

    def sum_part(part: int) -> None:
        summer = _ChunkSummer(width, min(chunk, n))
        for start in range(bounds[part], bounds[part + 1], chunk):
            rows = slice(start, min(start + chunk, bounds[part + 1]))
            summer.sum_into(images[rows], sums, rows)

    _run_in_threads(sum_part, threads)
    return _read_sums(sums, width)


def _colour_codes() -> np.ndarray:
    """Return bool (colours, 3): the channels that each palette colour darkens, red first."""
    ink = 1.0 - np.array([PALETTE[name] for name in _PROBED_COLOURS])
    return ink >= DARK_INK_SHARE * ink.max(axis=1, keepdims=True)


def _red_weight_coefficients() -> np.ndarray:
    """Return float64 (4,): c with a pixel's red share = c . channel inks / full ink + c[3].

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
    return np.array([*scale, constant])


class _ChunkSummer:
    """Sums the pixels of chunks of up to `capacity` images of width x width pixels.

    Steps 1 and 4 of the rule and the pixel sums of steps 2, 3, 5 and 6 happen here. Every
    array operation writes into buffers allocated once.
    """

    def __init__(self, width: int, capacity: int) -> None:
        pixels = width * width
        self._width = width
        self._codes = _colour_codes()
        self._planes = np.empty((3, capacity, pixels), dtype=np.float32)
        self._ink = np.empty((capacity, pixels), dtype=np.float32)
        self._weight = np.empty((capacity, pixels), dtype=np.float32)
        self._scratch = np.empty((2, capacity, pixels), dtype=np.float32)
        self._disc = np.empty((capacity, pixels), dtype=bool)
        self._dark = np.empty((3, capacity, pixels), dtype=bool)
        self._light = np.empty((3, capacity, pixels), dtype=bool)
        self._member = np.empty((capacity, pixels), dtype=bool)
        # Counts reach at most `pixels`, so 16 bits hold them for images up to 255x255.
        self._count_type = np.uint16 if pixels < 2**16 else np.uint32

    def sum_into(self, images: np.ndarray, sums: _PixelSums, rows: slice) -> None:
        """Sum the pixels of images (n, H, W, 3) into `sums` at `rows`."""
        n, width = images.shape[0], self._width
        planes = self._planes[:, :n]
        red, green, blue = planes
        interleaved = images.reshape(n, width * width, 3)
        # One strided copy per channel took half the time of one copy of the transposed
        # array (numpy 2.4).
        for channel in range(3):
            if images.dtype == np.uint8:
                np.multiply(interleaved[..., channel], np.float32(1 / 255), out=planes[channel])
            else:
                np.copyto(planes[channel], interleaved[..., channel], casting="unsafe")

        # Step 1: disc pixels by ink, and their row and column counts. Counts are whole
        # numbers below 2**24, so float32 sums of them are exact.
        darkest = self._ink[:n]
        np.minimum(red, green, out=darkest)
        np.minimum(darkest, blue, out=darkest)
        disc = np.less(darkest, np.float32(1.0 - FOREGROUND_MIN_INK), out=self._disc[:n])
        weight = self._weight[:n]
        np.copyto(weight, disc)
        square = weight.reshape(n, width, width)
        np.einsum("nhw->nw", square, out=sums.column_counts[rows])
        np.einsum("nhw->nh", square, out=sums.row_counts[rows])

        # Step 4: each disc pixel's colour from its dark and light channels. A channel is
        # dark when 1 - value > share * (1 - darkest), that is value < 1 - share * ink.
        ink = darkest
        np.subtract(np.float32(1.0), darkest, out=ink)
        dark_below, light_above = self._scratch[:, :n]
        np.multiply(ink, np.float32(-DARK_INK_SHARE), out=dark_below)
        dark_below += np.float32(1.0)
        np.multiply(ink, np.float32(-LIGHT_INK_SHARE), out=light_above)
        light_above += np.float32(1.0)
        dark, light = self._dark[:, :n], self._light[:, :n]
        for channel in range(3):
            np.less(planes[channel], dark_below, out=dark[channel])
            np.greater(planes[channel], light_above, out=light[channel])
        member = self._member[:n]
        for index, code in enumerate(self._codes):
            np.copyto(member, disc)
            for channel in range(3):
                member &= dark[channel] if code[channel] else light[channel]
            sums.colour_counts[index, rows] = member.view(np.uint8).sum(
                axis=1, dtype=self._count_type
            )

        # Step 5: g = 1 / full ink on disc pixels. Full ink is the pixel's ink, or the
        # palette's ink from INTERIOR_MIN_INK up. The floor at FOREGROUND_MIN_INK, below
        # every disc pixel's ink, keeps white and NaN pixels off a division by 0 or NaN.
        full_ink, step = self._scratch[:, :n]
        np.fmax(ink, np.float32(FOREGROUND_MIN_INK), out=full_ink)
        np.greater_equal(ink, np.float32(INTERIOR_MIN_INK), out=member)
        # For x in [0.8, 1], palette ink - x is exact (Sterbenz's lemma), so x plus it is
        # exactly the palette ink.
        np.subtract(np.float32(PALETTE_INK), full_ink, out=step)
        np.copyto(ink, member)
        step *= ink
        full_ink += step
        np.divide(weight, full_ink, out=weight)
        np.sum(weight, axis=1, out=sums.weight_sums[rows])
        channel_sums = sums.channel_sums[:, rows]
        np.einsum("cnp,np->cn", planes, weight, out=channel_sums)
        # A NaN channel outside the disc times its g of 0 is NaN, so such images are
        # summed again with the channels off the disc set to 0.
        broken = np.flatnonzero(~np.isfinite(channel_sums).all(axis=0))
        if broken.size:
            on_disc = np.where(disc[broken], planes[:, broken], np.float32(0.0))
            channel_sums[:, broken] = np.einsum("cnp,np->cn", on_disc, weight[broken])


def _read_sums(sums: _PixelSums, width: int) -> PieReading:
    """Apply steps 2, 3, 5 and 6 of the rule to the pixel sums of each image."""
    offsets = np.arange(width, dtype=np.float64) + 0.5 - width / 2
    column_counts = sums.column_counts.astype(np.float64)
    row_counts = sums.row_counts.astype(np.float64)

    # Steps 2 and 3: area, centre and polar moment from the disc's row and column counts.
    # einsum rather than a matrix product, which would start BLAS threads for large batches.
    area = column_counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre_x = np.einsum("nw,w->n", column_counts, offsets) / area
        centre_y = np.einsum("nh,h->n", row_counts, offsets) / area
        polar = np.einsum("nw,w->n", column_counts, offsets**2)
        polar += np.einsum("nh,h->n", row_counts, offsets**2)
        polar -= area * (centre_x**2 + centre_y**2)
        polar_ratio = 2 * np.pi * polar / area**2
    half = width / 2
    radius = np.sqrt(area / np.pi)
    inside = (np.abs(centre_x) + radius <= half + EDGE_SLACK_PIXELS) & (
        np.abs(centre_y) + radius <= half + EDGE_SLACK_PIXELS
    )
    readable = (radius >= MIN_RADIUS * half) & (polar_ratio <= MAX_POLAR_RATIO) & inside

    # Step 5: the mean red weight of the disc pixels. Summed over the disc, c . (1 - value)
    # * g + c[3] is c.sum() * (sum of g) - c . (sums of value * g) + c[3] * area.
    coefficients = _red_weight_coefficients()
    weighted = coefficients[:3].sum() * sums.weight_sums
    weighted -= np.einsum("c,cn->n", coefficients[:3], sums.channel_sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        red_share = weighted / area + coefficients[3]

    # Step 6: the colour count, and whether enough of the disc is coloured.
    colour_counts = sums.colour_counts
    colour_readable = readable & (colour_counts.sum(axis=0) >= MIN_COLOURED_SHARE * area)
    colour_count = (colour_counts >= MIN_WEDGE_PIXELS).sum(axis=0).astype(np.float64)

    size = np.where(readable, radius / half, np.nan)
    x = np.where(readable, centre_x / half, np.nan)
    y = np.where(readable, centre_y / half, np.nan)
    red_share = np.where(colour_readable, red_share, np.nan)
    colours = np.where(colour_readable, colour_count, np.nan)
    return PieReading(size=size, x=x, y=y, red_share=red_share, colours=colours)


def _thread_count(n_tasks: int) -> int:
    """Return how many threads to use: one per task, at most _MAX_THREADS or the CPU count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_THREADS, cpus or 1, n_tasks))


def _run_in_threads(task: Callable[[int], None], n_tasks: int) -> None:
    """Call task(0) .. task(n_tasks - 1), each on a thread of its own when there are several.

    Re-raises the first error.
    """
    if n_tasks <= 1:
        for index in range(n_tasks):
            task(index)
        return
    with ThreadPoolExecutor(max_workers=n_tasks) as pool:
        for future in [pool.submit(task, index) for index in range(n_tasks)]:
            future.result()
