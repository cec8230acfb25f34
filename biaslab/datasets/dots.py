"""Images of k non-overlapping coloured dots on a white background, rendered batch at a time.

Pixel (i, j) covers [j, j + 1) x [i, i + 1), so a 64x64 image spans [0, 64] on both axes.
A dot's centre lies at least one radius from every border, and the centres of two dots in
one image are more than `MIN_CENTRE_DISTANCE` radii apart. Each dot has one colour, drawn
uniformly from [0, `MAX_CHANNEL`] per channel. Edges are anti-aliased.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from biaslab.design import MAX_DOTS, DotsDataset

logger = logging.getLogger(__name__)

# Centres closer than this many radii are rejected, so dots never overlap and keep a gap of
# at least a tenth of a radius between their edges.
MIN_CENTRE_DISTANCE = 2.1
# The palest channel value a dot may have. At 0.9 every dot differs from the white
# background by at least 0.1 in every channel, so a probe can tell it from the background.
MAX_CHANNEL = 0.9

# Placement: each round draws this many candidate positions per image still waiting for
# its next dot, and takes the first one far enough from the dots already placed.
_CANDIDATES_FIRST_ROUND = 4
_CANDIDATES_LATER_ROUNDS = 64
_ROUNDS_PER_DOT = 8
# An image whose next dot finds no room within _ROUNDS_PER_DOT rounds starts over with new
# positions for all its dots. Placement fails after this many restarts of one image.
_MAX_RESTARTS = 200
# A count fits a radius when all _FIT_TEST_IMAGES test images place within an eighth of the
# restart budget. A count whose rendered images would exhaust the whole budget more often
# than once in 1e12 passes this test with a probability below 0.1%.
_FIT_TEST_IMAGES = 256
_FIT_TEST_RESTARTS = _MAX_RESTARTS // 8
_FIT_TEST_SEED = 0

# Images per thread task, and per block of noise: small enough that buffers stay in cache.
_CHUNK_IMAGES = 128
_NOISE_BLOCK_IMAGES = 16
_MAX_THREADS = 4


@dataclass(frozen=True)
class DotsBatch:
    """Rendered images with the true number of dots in each."""

    images: np.ndarray  # float32, (N, H, W, 3), values in [0, 1], white background = 1.0
    counts: np.ndarray  # int64, (N,), true number of dots in each image


def render_dots(design: DotsDataset, n: int, rng: np.random.Generator) -> DotsBatch:
    """Render n images whose counts are drawn from design.counts with its probabilities.

    The probabilities are design.count_probabilities(). The images use the design's size,
    radius and noise.
    """
    counts = rng.choice(
        np.asarray(design.counts, dtype=np.int64), size=n, p=design.count_probabilities()
    )
    images = render_counts(
        counts,
        image_size=design.image_size,
        dot_radius=design.dot_radius,
        noise=design.noise,
        rng=rng,
    )
    return DotsBatch(images=images, counts=counts)


def render_counts(
    counts: np.ndarray,
    *,
    image_size: int,
    dot_radius: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one image per entry of counts, as float32 (N, H, W, 3) in [0, 1].

    `dot_radius` is a fraction of the image width. Noise is Gaussian with standard deviation
    `noise`, reflected at 0 and 1 rather than clipped. Positions and colours come from `rng`.
    Noise, drawing and reflection run in threads on chunks of `_CHUNK_IMAGES` images, each
    chunk with a generator seeded from `rng`, so the images depend on the state of `rng` and
    not on the number of threads. Raises ValueError when a count does not fit at this radius.
    """
    counts = np.asarray(counts, dtype=np.int64)
    _check_render_arguments(counts, image_size, dot_radius, noise)

    radius = dot_radius * image_size
    starts = range(0, counts.size, _CHUNK_IMAGES)
    seeds = rng.integers(0, 2**63, size=len(starts))
    images = np.empty((counts.size, image_size, image_size, 3), dtype=np.float32)

    def start_chunk(index: int) -> None:
        chunk = images[starts[index] : starts[index] + _CHUNK_IMAGES]
        if noise > 0:
            _fill_with_noise(chunk, noise, np.random.default_rng(seeds[index]))
        else:
            chunk.fill(1.0)

    def finish_chunk(index: int) -> None:
        rows = slice(starts[index], starts[index] + _CHUNK_IMAGES)
        _draw(images[rows], counts[rows], centres[rows], colours[rows], radius)
        if noise > 0:
            _reflect_into_unit_interval(images[rows], noise)

    with ThreadPoolExecutor(max_workers=_thread_count(len(starts))) as pool:
        # Placement holds the GIL most of the time and the noise mostly does not, so the two
        # overlap. Dots are drawn onto the noisy background, then the sum is reflected.
        started = [pool.submit(start_chunk, index) for index in range(len(starts))]
        centres = place_dots(counts, image_size=image_size, radius=radius, rng=rng)
        colours = rng.uniform(0.0, MAX_CHANNEL, size=(counts.size, centres.shape[1], 3))
        colours = colours.astype(np.float32)
        _wait_for(started)
        _wait_for([pool.submit(finish_chunk, index) for index in range(len(starts))])
    return images


def _check_render_arguments(
    counts: np.ndarray, image_size: int, dot_radius: float, noise: float
) -> None:
    if counts.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {counts.shape}")
    if counts.size and (counts.min() < 0 or counts.max() > MAX_DOTS):
        raise ValueError(f"counts must lie in 0..{MAX_DOTS}, got {counts.min()}..{counts.max()}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    if not 0 < dot_radius < 0.5:
        raise ValueError(f"dot_radius must lie in (0, 0.5) of the image width, got {dot_radius}")
    if noise < 0:
        raise ValueError(f"noise must be at least 0, got {noise}")


def _thread_count(n_tasks: int) -> int:
    """Return how many threads to use: one per task, at most _MAX_THREADS or the CPU count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_THREADS, cpus or 1, n_tasks))


def _wait_for(futures: list[Future[None]]) -> None:
    """Wait for all futures and re-raise the first error."""
    for future in futures:
        future.result()


def check_counts_fit(*, counts: list[int], image_size: int, dot_radius: float) -> None:
    """Raise ValueError unless every count reliably fits at this radius.

    Callers use it to reject a design before any work starts, because rendering would
    raise a ValueError later. The result for one (image size, radius) is cached.
    """
    largest = largest_count_that_fits(image_size=image_size, dot_radius=dot_radius)
    too_many = [count for count in counts if count > largest]
    if too_many:
        raise ValueError(
            f"counts {too_many} do not fit at dot_radius {dot_radius:g} in "
            f"{image_size}x{image_size} images: dots need centres more than "
            f"{MIN_CENTRE_DISTANCE} radii apart, and at most {largest} dots fit at this "
            "radius; use smaller counts or a smaller radius"
        )


@functools.lru_cache(maxsize=64)
def largest_count_that_fits(*, image_size: int, dot_radius: float) -> int:
    """Return the largest count up to MAX_DOTS that places reliably at this radius, or 0.

    The test is deterministic: a fixed seed, _FIT_TEST_IMAGES images per count.
    """
    rng = np.random.default_rng(_FIT_TEST_SEED)
    radius = dot_radius * image_size
    largest = 0
    # Counts that fit place quickly and a count that does not fit takes the whole budget,
    # so searching upwards stops at the first failure.
    for count in range(1, MAX_DOTS + 1):
        counts = np.full(_FIT_TEST_IMAGES, count)
        _, stuck = _place(counts, image_size, radius, rng, max_restarts=_FIT_TEST_RESTARTS)
        if stuck.size:
            break
        largest = count
    return largest


def place_dots(
    counts: np.ndarray, *, image_size: int, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """Return dot centres in pixels as (y, x), float64 (N, max(counts), 2).

    Slots past an image's count are NaN, and `radius` is in pixels. Positions come from
    sequential rejection sampling, vectorized over the images: each dot is uniform over the
    room that the earlier dots of its image leave. Raises ValueError when an image keeps
    getting stuck.
    """
    counts = np.asarray(counts, dtype=np.int64)
    centres, stuck = _place(counts, image_size, radius, rng, max_restarts=_MAX_RESTARTS)
    if stuck.size:
        dot_radius = radius / image_size
        largest = largest_count_that_fits(image_size=image_size, dot_radius=dot_radius)
        failed = sorted(set(counts[stuck].tolist()))
        raise ValueError(
            f"placing {' or '.join(map(str, failed))} dots at dot_radius {dot_radius:g} in "
            f"{image_size}x{image_size} images failed after {_MAX_RESTARTS} restarts; at most "
            f"{largest} dots fit at this radius, so use smaller counts or a smaller radius"
        )
    return centres


def _place(
    counts: np.ndarray,
    image_size: int,
    radius: float,
    rng: np.random.Generator,
    *,
    max_restarts: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Place counts[i] dots in image i and return the centres and the images still stuck."""
    slots = int(counts.max()) if counts.size else 0
    centres = np.full((counts.size, slots, 2), np.nan)
    pending = np.flatnonzero(counts > 0)
    for _ in range(max_restarts + 1):
        if pending.size == 0:
            break
        placed, stuck = _try_place(counts[pending], image_size, radius, rng)
        done = pending[~stuck]
        centres[done, : placed.shape[1]] = placed[~stuck]
        pending = pending[stuck]
    if pending.size:
        logger.debug(
            "%d of %d images could not place their dots at radius %.2f px",
            pending.size,
            counts.size,
            radius,
        )
    return centres, pending


def _try_place(
    counts: np.ndarray, image_size: int, radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place dots one slot at a time and return centres (n, slots, 2) and a stuck mask (n,).

    Slots past an image's count stay NaN.
    """
    n, slots = counts.size, int(counts.max())
    low, high = radius, image_size - radius
    min_squared_distance = (MIN_CENTRE_DISTANCE * radius) ** 2
    ys = np.full((n, slots), np.nan)
    xs = np.full((n, slots), np.nan)
    stuck = np.zeros(n, dtype=bool)

    for slot in range(slots):
        waiting = np.flatnonzero((counts > slot) & ~stuck)
        candidates = _CANDIDATES_FIRST_ROUND
        for _ in range(_ROUNDS_PER_DOT):
            if waiting.size == 0:
                break
            # Candidates (waiting, candidates) against the dots placed so far (waiting, slot).
            cand_y, cand_x = rng.uniform(low, high, size=(2, waiting.size, candidates))
            squared = (cand_y[:, :, None] - ys[waiting, None, :slot]) ** 2
            squared += (cand_x[:, :, None] - xs[waiting, None, :slot]) ** 2
            fits = (squared > min_squared_distance).all(axis=2)
            first = fits.argmax(axis=1)
            found = np.flatnonzero(fits[np.arange(waiting.size), first])
            ys[waiting[found], slot] = cand_y[found, first[found]]
            xs[waiting[found], slot] = cand_x[found, first[found]]
            waiting = np.delete(waiting, found)
            candidates = _CANDIDATES_LATER_ROUNDS
        stuck[waiting] = True
    return np.stack([ys, xs], axis=2), stuck


def _draw(
    images: np.ndarray,
    counts: np.ndarray,
    centres: np.ndarray,
    colours: np.ndarray,
    radius: float,
) -> None:
    """Subtract anti-aliased dots from the background in `images` (n, H, W, 3), slot by slot.

    The background is white, or white plus noise that is reflected afterwards.
    """
    image_size = images.shape[1]

    # A pixel's coverage is the linear ramp clip(radius + 0.5 - distance, 0, 1), so a dot
    # reaches pixels out to radius + 0.5 from its centre, and `patch` pixels span that.
    patch = int(np.ceil(2 * radius + 2))
    windows = sliding_window_view(images, (patch, patch), axis=(1, 2), writeable=True)
    pixel_centres = np.arange(patch, dtype=np.float32) + np.float32(0.5)
    edge = np.float32(radius + 0.5)
    for slot in range(centres.shape[1]):
        rows = np.flatnonzero(counts > slot)
        if rows.size == 0:
            break
        cy, cx = centres[rows, slot, 0], centres[rows, slot, 1]
        top = np.clip(np.floor(cy - radius - 0.5).astype(np.int64), 0, image_size - patch)
        left = np.clip(np.floor(cx - radius - 0.5).astype(np.int64), 0, image_size - patch)
        dy = pixel_centres + (top - cy).astype(np.float32)[:, None]  # (rows, patch)
        dx = pixel_centres + (left - cx).astype(np.float32)[:, None]
        coverage = np.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2)  # (rows, patch, patch)
        np.subtract(edge, coverage, out=coverage)
        np.clip(coverage, 0.0, 1.0, out=coverage)

        # Coverages of two dots sum to at most 1 - 0.1 * radius on any pixel, because their
        # centres are more than 2.1 radii apart, so on white, pixels stay within [0, 1].
        ink = 1.0 - colours[rows, slot]  # (rows, 3)
        window = windows[rows, top, left]  # a copy, (rows, 3, patch, patch)
        window -= coverage[:, None] * ink[:, :, None, None]
        windows[rows, top, left] = window


def _fill_with_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Fill `images` with white plus Gaussian noise, not yet folded into [0, 1].

    Works through `_NOISE_BLOCK_IMAGES` images at a time with buffers allocated once, which
    keeps the work in cache and avoids page faults from fresh temporaries.
    """
    normal = _NormalBuffers(images[:_NOISE_BLOCK_IMAGES].size)
    for start in range(0, images.shape[0], _NOISE_BLOCK_IMAGES):
        block = images[start : start + _NOISE_BLOCK_IMAGES].reshape(-1)
        np.add(normal.draw(block.size, sigma, rng), np.float32(1.0), out=block)


def _reflect_into_unit_interval(images: np.ndarray, sigma: float) -> None:
    """Fold noisy values into [0, 1] in place by reflecting at 0 and at 1."""
    # Draws never exceed _NormalBuffers.MAX_SIGMAS, so below this sigma every noisy value
    # lies in [-1, 2] and one reflection at each border is enough.
    single_reflection = sigma * _NormalBuffers.MAX_SIGMAS < 1.0
    for start in range(0, images.shape[0], _NOISE_BLOCK_IMAGES):
        block = images[start : start + _NOISE_BLOCK_IMAGES].reshape(-1)
        if single_reflection or (block.min() >= -1.0 and block.max() <= 2.0):
            _reflect_once(block)
        else:
            _reflect_repeatedly(block)


def _reflect_once(values: np.ndarray) -> None:
    """Fold values in [-1, 2] into [0, 1] in place, reflecting at 0 and at 1."""
    np.abs(values, out=values)
    np.subtract(1.0, values, out=values)
    np.abs(values, out=values)
    np.subtract(1.0, values, out=values)


def _reflect_repeatedly(values: np.ndarray) -> None:
    """Fold any values into [0, 1] in place with a triangle wave of period 2."""
    np.add(values, 1.0, out=values)
    np.mod(values, 2.0, out=values)
    np.subtract(values, 1.0, out=values)
    np.abs(values, out=values)


class _NormalBuffers:
    """Scratch buffers for drawing float32 normal noise with the Box-Muller transform.

    On a 2-core AMD EPYC virtual machine, numpy 2.4's float32 `standard_normal` took 8.6 ns
    per value and this transform 3.0 ns, both into reused buffers. Uniforms have 24-bit
    resolution, so the tails end at 5.8 sigma.
    """

    # Largest magnitude of a draw in standard deviations: sqrt(-2 ln 2^-24), since the
    # smallest uniform that enters the logarithm is 2^-24.
    MAX_SIGMAS = 5.77

    def __init__(self, size: int) -> None:
        half = (size + 1) // 2
        self._uniform = np.empty(2 * half, dtype=np.float32)
        self._noise = np.empty(2 * half, dtype=np.float32)

    def draw(self, size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Return `size` normal draws with standard deviation sigma, valid until the next call."""
        half = (size + 1) // 2
        uniform = self._uniform[: 2 * half].reshape(2, half)
        rng.random(dtype=np.float32, out=uniform)
        # 1 - u lies in (0, 1], so the logarithm is finite.
        magnitude = uniform[0]
        np.subtract(np.float32(1.0), magnitude, out=magnitude)
        np.log(magnitude, out=magnitude)
        magnitude *= np.float32(-2.0 * sigma * sigma)
        np.sqrt(magnitude, out=magnitude)
        angle = uniform[1]
        angle *= np.float32(2.0 * np.pi)
        noise = self._noise[: 2 * half]
        np.cos(angle, out=noise[:half])
        np.sin(angle, out=noise[half:])
        noise[:half] *= magnitude
        noise[half:] *= magnitude
        return noise[:size]


class DotsTrainingSet:
    """Training images for one run, seeded.

    With design.training_images set, a fixed set is drawn once at construction and batches
    sample from it. With None, every batch is rendered fresh.
    """

    def __init__(self, design: DotsDataset, seed: int) -> None:
        check_counts_fit(
            counts=design.counts, image_size=design.image_size, dot_radius=design.dot_radius
        )
        self.design = design
        # Separate streams, so reading reference counts never changes the batches.
        batch_seed, reference_seed = np.random.SeedSequence(seed).spawn(2)
        self._rng = np.random.default_rng(batch_seed)
        self._reference_rng = np.random.default_rng(reference_seed)
        self._fixed: DotsBatch | None = None
        if design.training_images is not None:
            self._fixed = render_dots(design, design.training_images, self._rng)
            logger.info(
                "rendered a fixed training set of %d images of %dx%d pixels",
                design.training_images,
                design.image_size,
                design.image_size,
            )

    @property
    def fixed(self) -> DotsBatch | None:
        """The fixed training set, or None when every batch is rendered fresh."""
        return self._fixed

    def batch(self, batch_size: int) -> DotsBatch:
        """Return a minibatch drawn with replacement from the fixed set, or fresh images."""
        if self._fixed is None:
            return render_dots(self.design, batch_size, self._rng)
        rows = self._rng.integers(0, self._fixed.counts.size, size=batch_size)
        return DotsBatch(images=self._fixed.images[rows], counts=self._fixed.counts[rows])

    def rng_state(self) -> dict[str, Any]:
        """Return the state of the generator that draws batches, for a checkpoint.

        The reference generator is left out because it is read only before step 1.
        """
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state that `rng_state` returned, so the next batches repeat."""
        self._rng.bit_generator.state = state

    def reference_counts(self, n: int) -> np.ndarray:
        """Return the true counts of n training images, for the training histogram.

        A fixed set returns its first n counts, repeating the whole set cyclically when n
        exceeds its size. Fresh training draws n counts with the design's weights.
        """
        if self._fixed is not None:
            return np.resize(self._fixed.counts, n)
        return self._reference_rng.choice(
            np.asarray(self.design.counts, dtype=np.int64),
            size=n,
            p=self.design.count_probabilities(),
        )
