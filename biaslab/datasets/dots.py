"""Images of k non-overlapping coloured dots on a white background, rendered batch at a time.

Pixel (i, j) covers [j, j + 1) x [i, i + 1), so a 64x64 image spans [0, 64] on both axes.
A dot's centre lies at least one radius from every border. The edges of two dots in one image
are more than `min_spacing` times their mean radius apart, so with the default spacing of 0.1
the centres of two dots of radius r are more than `MIN_CENTRE_DISTANCE` radii apart. Radii are
fixed, shrink with the count so that the total dot area stays constant, or are drawn per dot
from a range. Colours are drawn per channel from [0, `MAX_CHANNEL`], or are one given colour,
or are drawn per dot from a palette. Edges are anti-aliased.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from biaslab.datasets.noise import fill_with_noise, reflect_into_unit_interval
from biaslab.design import MAX_DOTS, DotsDataset
from biaslab.design.datasets import DEFAULT_MIN_SPACING, RadiusMode, constant_area_radius

logger = logging.getLogger(__name__)

# With the default spacing, centres of two dots of one radius closer than this many radii are
# rejected, so dots never overlap and keep a gap of at least a tenth of a radius.
MIN_CENTRE_DISTANCE = 2 + DEFAULT_MIN_SPACING
# The palest channel value a dot may have. At 0.9 every dot differs from the white
# background by at least 0.1 in every channel, so a probe can tell it from the background.
MAX_CHANNEL = 0.9

# Placement: each round draws this many candidate positions per image still waiting for
# its next dot, and takes the first one far enough from the dots already placed.
_ROUND_CANDIDATES = (4, 64, 64, 64, 64, 64, 64, 64)
# Distances to placed dots are compared in float32 against the squared limit raised by this
# share and by as many square pixels, so that no rounding lets two dots come too close.
_FLOAT32_MARGIN = 1e-4
# Rounds after the first _UNIFORM_ROUNDS draw candidates only from the cells of a grid that
# the placed dots leave uncovered (see _Room), _ROOM_CELLS cells on a side.
_UNIFORM_ROUNDS = 2
_ROOM_CELLS = 16  # at most 62: each row of cells is one bit mask in an int64
# An image whose next dot finds no room within these rounds, or no live cell, starts over
# with new positions for all its dots. Placement fails after this many restarts of one image.
_MAX_RESTARTS = 200
# Images that got stuck make several attempts at once in the next pass, each image as many as
# it needs to place with probability _PASS_SUCCESS, judged by the last pass's success at its
# count, and at most _MAX_REPLICAS. A few long passes take far fewer numpy calls than many
# short ones over a handful of images each. An image takes its first attempt that placed,
# so its dots follow the same distribution.
_PASS_SUCCESS = 0.9
_MAX_REPLICAS = 16
# A count fits a radius when all _FIT_TEST_IMAGES test images place within an eighth of the
# restart budget. A count whose rendered images would exhaust the whole budget more often
# than once in 1e12 passes this test with a probability below 0.1%.
_FIT_TEST_IMAGES = 256
_FIT_TEST_RESTARTS = _MAX_RESTARTS // 8
_FIT_TEST_SEED = 0
# The fit test gives up early after this many attempts of every test image, when the share of
# attempts that placed so far leaves _FIT_TEST_GIVE_UP_FAILURES or more images expected to
# stay stuck to the end. All of them would then place with probability about exp(-10), below
# 1e-4. So giving up changes almost no outcome, and a count that does not fit costs little.
_FIT_TEST_GIVE_UP_ATTEMPTS = 2
_FIT_TEST_GIVE_UP_FAILURES = 10

# Images per noise generator and per choice of window size (see _draw). A chunk's images
# depend only on its own seed and dots, so they do not change with the number of threads.
_CHUNK_IMAGES = 128
# At most this many chunks make one thread task. _draw's calls hold the GIL between short
# array operations, so a thread that draws four chunks in one call waits for the GIL a
# quarter as often. The noise, draw and reflection of 1,024 images of up to 16 dots ran 12%
# faster on 2 threads than in tasks of one chunk.
_TASK_CHUNKS = 4
_MAX_THREADS = 4


@dataclass(frozen=True)
class DotsBatch:
    """Rendered images with the true number of dots and the true mean dot radius of each."""

    images: np.ndarray  # float32, (N, H, W, 3), values in [0, 1], white background = 1.0
    counts: np.ndarray  # int64, (N,), true number of dots in each image
    # float64, (N,): mean dot radius as a fraction of the image width, NaN without dots
    mean_radii: np.ndarray


@dataclass(frozen=True)
class DotLayout:
    """Dot sizes and spacing: everything that placing dots depends on.

    Radii are fractions of the image width. "fixed" gives every dot `dot_radius`.
    "constant_area" gives an image of k dots the radius dot_radius * sqrt(reference_count / k).
    "range" draws each dot's radius uniformly from `radius_range`. Two dots of radii a and b
    keep their edges more than min_spacing * (a + b) / 2 apart.
    """

    image_size: int
    dot_radius: float = 0.08
    radius_mode: RadiusMode = "fixed"
    radius_range: tuple[float, float] | None = None
    reference_count: int = 1
    min_spacing: float = DEFAULT_MIN_SPACING

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {self.image_size}")
        if self.radius_mode not in ("fixed", "constant_area", "range"):
            raise ValueError(
                f"radius_mode must be fixed, constant_area or range, got {self.radius_mode!r}"
            )
        if self.radius_mode == "range":
            if self.radius_range is None or not 0 < self.radius_range[0] < self.radius_range[1]:
                raise ValueError(
                    f"radius_range must be (smaller, larger) radii above 0, got {self.radius_range}"
                )
            if self.radius_range[1] >= 0.5:
                raise ValueError(f"radius_range must lie below 0.5, got {self.radius_range}")
        elif not 0 < self.dot_radius < 0.5:
            raise ValueError(
                f"dot_radius must lie in (0, 0.5) of the image width, got {self.dot_radius}"
            )
        if self.reference_count < 1:
            raise ValueError(f"reference_count must be at least 1, got {self.reference_count}")
        if self.min_spacing < 0:
            raise ValueError(f"min_spacing must be at least 0, got {self.min_spacing}")

    def radius_for_count(self, count: int) -> float:
        """Return the radius of every dot at this count; fixed and constant_area only."""
        if self.radius_mode == "constant_area":
            return constant_area_radius(self.dot_radius, self.reference_count, count)
        return self.dot_radius

    def radii(self, counts: np.ndarray, rng: np.random.Generator) -> float | np.ndarray:
        """Return dot radii in pixels: one float for fixed, else float64 (N, max(counts)).

        Slots past an image's count are NaN. Only the range mode draws from `rng`.
        """
        if self.radius_mode == "fixed":
            return self.dot_radius * self.image_size
        slots = int(counts.max()) if counts.size else 0
        present = np.arange(slots) < counts[:, None]
        if self.radius_mode == "range":
            assert self.radius_range is not None  # checked in __post_init__
            low, high = self.radius_range
            drawn = rng.uniform(low * self.image_size, high * self.image_size, (counts.size, slots))
            return np.where(present, drawn, np.nan)
        per_image = self.dot_radius * np.sqrt(self.reference_count / np.maximum(counts, 1))
        return np.where(present, (per_image * self.image_size)[:, None], np.nan)

    def describe(self) -> str:
        """Describe the radii in words for error messages."""
        if self.radius_mode == "range":
            assert self.radius_range is not None
            return f"dot radii drawn from {self.radius_range[0]:g}-{self.radius_range[1]:g}"
        if self.radius_mode == "constant_area":
            return (
                f"constant-area radii (dot_radius {self.dot_radius:g} at "
                f"{self.reference_count} dots)"
            )
        return f"dot_radius {self.dot_radius:g}"


def render_dots(design: DotsDataset, n: int, rng: np.random.Generator) -> DotsBatch:
    """Render n images whose counts are drawn from design.counts with its probabilities.

    The probabilities are design.count_probabilities(). The images use the design's size,
    radii, colours, spacing and noise.
    """
    counts = rng.choice(
        np.asarray(design.counts, dtype=np.int64), size=n, p=design.count_probabilities()
    )
    layout = DotLayout(**design.layout_arguments())
    images, radii = _render(counts, layout, design.noise, design.rgb_colours(), rng)
    return DotsBatch(images=images, counts=counts, mean_radii=_mean_radii(radii, counts, layout))


def render_counts(
    counts: np.ndarray,
    *,
    image_size: int,
    dot_radius: float,
    noise: float,
    rng: np.random.Generator,
    radius_mode: RadiusMode = "fixed",
    radius_range: tuple[float, float] | None = None,
    reference_count: int = 1,
    colours: Sequence[tuple[float, float, float]] | None = None,
    min_spacing: float = DEFAULT_MIN_SPACING,
) -> np.ndarray:
    """Render one image per entry of counts, as float32 (N, H, W, 3) in [0, 1].

    `dot_radius` is a fraction of the image width, and `radius_mode`, `radius_range`,
    `reference_count` and `min_spacing` act as in DotLayout. `colours` are RGB in [0, 1]:
    None draws each channel from [0, MAX_CHANNEL], one colour paints every dot, and several
    are drawn per dot with equal probability. Noise is Gaussian with standard deviation
    `noise`, reflected at 0 and 1 rather than clipped. Positions, radii and colours come from
    `rng`. Noise, drawing and reflection run in threads on chunks of `_CHUNK_IMAGES` images,
    each chunk with a generator seeded from `rng`, so the images depend on the state of `rng`
    and not on the number of threads. Raises ValueError when a count does not fit.
    """
    layout = DotLayout(
        image_size=image_size,
        dot_radius=dot_radius,
        radius_mode=radius_mode,
        radius_range=radius_range,
        reference_count=reference_count,
        min_spacing=min_spacing,
    )
    images, _ = _render(np.asarray(counts, dtype=np.int64), layout, noise, colours, rng)
    return images


def _render(
    counts: np.ndarray,
    layout: DotLayout,
    noise: float,
    colours: Sequence[tuple[float, float, float]] | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float | np.ndarray]:
    """Render the images and return them with the radii in pixels (see DotLayout.radii)."""
    palette = _check_render_arguments(counts, layout, noise, colours)

    image_size = layout.image_size
    starts = range(0, counts.size, _CHUNK_IMAGES)
    seeds = rng.integers(0, 2**63, size=len(starts))
    images = np.empty((counts.size, image_size, image_size, 3), dtype=np.float32)
    threads = _thread_count(len(starts))
    placing = threading.Event()
    placing.set()

    def touch_pages() -> None:
        """Write the chunks once while dots are placed, so that their pages exist later."""
        for start in starts:
            if not placing.is_set():
                return
            # One call per chunk: it releases the GIL, and placement holds it between calls.
            images[start : start + _CHUNK_IMAGES].fill(1.0)

    # Tasks of whole chunks, as many per thread as _TASK_CHUNKS allows.
    task_chunks = max(1, min(_TASK_CHUNKS, -(-len(starts) // threads)))
    unfinished: queue.SimpleQueue[range] = queue.SimpleQueue()
    for first in range(0, len(starts), task_chunks):
        unfinished.put(range(first, min(first + task_chunks, len(starts))))

    def finish_tasks() -> None:
        """Fill tasks with noisy white, draw their dots and reflect, until none is left."""
        while True:
            try:
                task = unfinished.get_nowait()
            except queue.Empty:
                return
            rows = slice(starts[task[0]], starts[task[-1]] + _CHUNK_IMAGES)
            for index in task:
                chunk = images[starts[index] : starts[index] + _CHUNK_IMAGES]
                if noise > 0:
                    fill_with_noise(chunk, noise, np.random.default_rng(seeds[index]))
                else:
                    chunk.fill(1.0)
            # Dots are drawn onto the noisy background, then the sum is reflected.
            task_radii = radii if isinstance(radii, float) else radii[rows]
            _draw(images[rows], counts[rows], centres[rows], colours_drawn[rows], task_radii)
            if noise > 0:
                reflect_into_unit_interval(images[rows], noise)

    with ThreadPoolExecutor(max_workers=max(1, threads - 1)) as pool:
        # Placement holds the GIL between its many short numpy calls. A thread that filled
        # noise meanwhile would wait for the GIL after each of its calls and slow placement
        # down by more than it gained. So the other thread only writes each chunk once, which
        # takes the page faults of the fresh array out of the work that follows.
        touching = pool.submit(touch_pages) if threads > 1 else None
        radii = layout.radii(counts, rng)
        centres = _place_or_raise(counts, layout, radii, rng)
        colours_drawn = _draw_colours(palette, (counts.size, centres.shape[1]), rng)
        placing.clear()
        if touching is not None:
            _wait_for([touching])
        finishing = [pool.submit(finish_tasks) for _ in range(threads - 1)]
        finish_tasks()
        _wait_for(finishing)
    return images, radii


def _draw_colours(
    palette: np.ndarray | None, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Return float32 dot colours (N, slots, 3): random, one colour, or drawn from a palette."""
    if palette is None:
        return rng.uniform(0.0, MAX_CHANNEL, size=(*shape, 3)).astype(np.float32)
    if len(palette) == 1:
        return np.broadcast_to(palette[0], (*shape, 3))
    return palette[rng.integers(0, len(palette), size=shape)]


def _mean_radii(radii: float | np.ndarray, counts: np.ndarray, layout: DotLayout) -> np.ndarray:
    """Return each image's mean dot radius as a fraction of the width, NaN without dots."""
    if isinstance(radii, float):
        per_image = np.full(counts.size, radii)
    else:
        per_image = np.nansum(radii, axis=1) / np.maximum(counts, 1)
    return np.where(counts > 0, per_image / layout.image_size, np.nan)


def _check_render_arguments(
    counts: np.ndarray,
    layout: DotLayout,
    noise: float,
    colours: Sequence[tuple[float, float, float]] | None,
) -> np.ndarray | None:
    """Check the arguments and return the colours as float32 (k, 3), or None for random."""
    if counts.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {counts.shape}")
    if counts.size and (counts.min() < 0 or counts.max() > MAX_DOTS):
        raise ValueError(f"counts must lie in 0..{MAX_DOTS}, got {counts.min()}..{counts.max()}")
    if noise < 0:
        raise ValueError(f"noise must be at least 0, got {noise}")
    present = counts[counts > 0]
    if layout.radius_mode == "constant_area" and present.size:
        largest = layout.radius_for_count(int(present.min()))
        if largest >= 0.5:
            raise ValueError(
                f"constant-area dots at {present.min()} dots have radius {largest:.3f}, not "
                "below 0.5 of the image width"
            )
    if colours is None:
        return None
    palette = np.asarray(colours, dtype=np.float32)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.shape[0] == 0:
        raise ValueError(f"colours must be a list of RGB triples, got shape {palette.shape}")
    if not ((palette >= 0) & (palette <= 1)).all():
        raise ValueError(f"colour channels must lie in [0, 1], got {palette.tolist()}")
    return palette


def _thread_count(n_tasks: int) -> int:
    """Return how many threads to use: one per task, at most _MAX_THREADS or the CPU count."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(_MAX_THREADS, cpus or 1, n_tasks))


def _wait_for(futures: list[Future[None]]) -> None:
    """Wait for all futures and re-raise the first error."""
    for future in futures:
        future.result()


def check_counts_fit(*, counts: list[int], **layout: Any) -> None:
    """Raise ValueError unless every count reliably fits with this layout.

    `layout` holds the keyword arguments of DotLayout. Callers use it to reject a design
    before any work starts, because rendering would raise a ValueError later. The result for
    one layout is cached.
    """
    dots = DotLayout(**layout)
    fitting = _fitting_counts(dots)
    too_many = [count for count in counts if count not in fitting]
    if not too_many:
        return
    largest = max(fitting, default=0)
    where = f"with {dots.describe()} in {dots.image_size}x{dots.image_size} images"
    if dots.radius_mode == "constant_area":
        shown = ", ".join(map(str, fitting)) if fitting else "none"
        raise ValueError(
            f"counts {too_many} do not fit {where}: their dots need gaps of more than "
            f"{dots.min_spacing:g} radii, and the counts that fit are {shown} (the largest "
            f"count that fits is {largest}); change the counts, dot_radius, reference_count or "
            "min_spacing"
        )
    # At the default spacing both rules mean gaps of 0.1 radii between edges.
    if dots.min_spacing == DEFAULT_MIN_SPACING:
        rule = f"dots need centres more than {MIN_CENTRE_DISTANCE} radii apart"
        remedies = "use smaller counts or smaller dots"
    else:
        rule = f"dots need gaps of more than {dots.min_spacing:g} radii"
        remedies = "use smaller counts, smaller dots or a smaller min_spacing"
    how_many = "1 dot fits" if largest == 1 else f"{largest} dots fit"
    raise ValueError(
        f"counts {too_many} do not fit {where}: {rule}, and at most {how_many} at this "
        f"radius; {remedies}"
    )


def largest_count_that_fits(**layout: Any) -> int:
    """Return the largest count up to MAX_DOTS that places reliably with this layout, or 0.

    `layout` holds the keyword arguments of DotLayout. The test is deterministic: a fixed
    seed, _FIT_TEST_IMAGES images per count.
    """
    return max(_fitting_counts(DotLayout(**layout)), default=0)


@functools.lru_cache(maxsize=64)
def _fitting_counts(layout: DotLayout) -> tuple[int, ...]:
    """Return the counts from 1 to MAX_DOTS that place reliably with this layout."""
    if layout.radius_mode == "constant_area":
        # Each count has its own radius, and the total area is the same at every count, so
        # counts are tested one by one. Radii of half the width and more cannot be drawn.
        fitting = []
        for count in range(1, MAX_DOTS + 1):
            if layout.radius_for_count(count) < 0.5 and _fits(layout, count, _FIT_TEST_SEED):
                fitting.append(count)
        return tuple(fitting)
    rng = np.random.default_rng(_FIT_TEST_SEED)
    largest = 0
    # Counts that fit place quickly and a count that does not fit takes the whole budget,
    # so searching upwards stops at the first failure.
    for count in range(1, MAX_DOTS + 1):
        if not _fits(layout, count, rng):
            break
        largest = count
    return tuple(range(1, largest + 1))


def _fits(layout: DotLayout, count: int, rng: np.random.Generator | int) -> bool:
    """Return whether _FIT_TEST_IMAGES images of `count` dots place within the test budget."""
    if isinstance(rng, int):
        rng = np.random.default_rng([rng, count])
    counts = np.full(_FIT_TEST_IMAGES, count)
    radii = layout.radii(counts, rng)
    _, stuck = _place(
        counts,
        layout.image_size,
        radii,
        layout.min_spacing,
        rng,
        max_restarts=_FIT_TEST_RESTARTS,
        give_up_attempts=_FIT_TEST_GIVE_UP_ATTEMPTS,
        stop_at_first_failure=True,
    )
    return stuck.size == 0


def place_dots(
    counts: np.ndarray,
    *,
    image_size: int,
    radius: float | np.ndarray,
    rng: np.random.Generator,
    min_spacing: float = DEFAULT_MIN_SPACING,
) -> np.ndarray:
    """Return dot centres in pixels as (y, x), float64 (N, max(counts), 2).

    Slots past an image's count are NaN. `radius` is in pixels: one float for every dot, or
    float64 (N, max(counts)) per dot. Two dots of radii a and b keep their edges more than
    min_spacing * (a + b) / 2 apart. Positions come from sequential rejection sampling,
    vectorized over the images: each dot is uniform over the room that the earlier dots of
    its image leave. After two rounds of candidates, the candidates of a dot come only from
    the grid cells that still hold room, and an image whose dot finds none starts over.
    Raises ValueError when an image keeps getting stuck.
    """
    counts = np.asarray(counts, dtype=np.int64)
    centres, stuck = _place(
        counts, image_size, radius, min_spacing, rng, max_restarts=_MAX_RESTARTS
    )
    if stuck.size:
        failed = sorted(set(counts[stuck].tolist()))
        raise ValueError(
            f"placing {' or '.join(map(str, failed))} dots in {image_size}x{image_size} images "
            f"failed after {_MAX_RESTARTS} restarts; use smaller counts or smaller dots"
        )
    return centres


def _place_or_raise(
    counts: np.ndarray, layout: DotLayout, radii: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Place the dots of a render, or raise ValueError naming the largest count that fits."""
    centres, stuck = _place(
        counts, layout.image_size, radii, layout.min_spacing, rng, max_restarts=_MAX_RESTARTS
    )
    if stuck.size:
        failed = sorted(set(counts[stuck].tolist()))
        largest = max(_fitting_counts(layout), default=0)
        raise ValueError(
            f"placing {' or '.join(map(str, failed))} dots at {layout.describe()} in "
            f"{layout.image_size}x{layout.image_size} images failed after {_MAX_RESTARTS} "
            f"restarts; at most {largest} dots fit at this radius, so use smaller counts or "
            "smaller dots"
        )
    return centres


def _place(
    counts: np.ndarray,
    image_size: int,
    radii: float | np.ndarray,
    spacing: float,
    rng: np.random.Generator,
    *,
    max_restarts: int,
    give_up_attempts: int | None = None,
    stop_at_first_failure: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Place counts[i] dots in image i and return the centres and the images still stuck.

    Each image makes at most max_restarts + 1 attempts. With `give_up_attempts`, every
    image makes that many attempts one at a time, and placement stops then if the images
    still stuck are expected to leave _FIT_TEST_GIVE_UP_FAILURES or more stuck at the end.
    With `stop_at_first_failure`, it stops once one image has used all its attempts.
    """
    slots = int(counts.max()) if counts.size else 0
    centres = np.full((counts.size, slots, 2), np.nan)
    pending = np.flatnonzero(counts > 0)
    images_with_dots = pending.size
    attempts = np.zeros(counts.size, dtype=np.int64)
    # Share of the last pass's attempts that placed, per count.
    success = np.ones(slots + 1)
    for passes in itertools.count():
        if pending.size == 0:
            break
        if passes == give_up_attempts:
            placed_share = (images_with_dots - pending.size) / attempts.sum()
            left = max_restarts + 1 - give_up_attempts
            if pending.size * (1 - placed_share) ** left >= _FIT_TEST_GIVE_UP_FAILURES:
                break
        budget = max_restarts + 1 - attempts[pending]
        active = pending[budget > 0]
        if active.size == 0 or (stop_at_first_failure and active.size < pending.size):
            break
        if give_up_attempts is not None and passes < give_up_attempts:
            replicas = np.ones(active.size, dtype=np.int64)
        else:
            replicas = _replicas(success[counts[active]], budget[budget > 0])
        trials = np.repeat(active, replicas)
        attempts[active] += replicas
        trial_radii = radii if isinstance(radii, float) else radii[trials]
        placed, stuck = _try_place(counts[trials], image_size, trial_radii, spacing, rng)
        tried = np.bincount(counts[trials], minlength=slots + 1)
        worked = np.bincount(counts[trials[~stuck]], minlength=slots + 1)
        success = np.where(tried > 0, worked / np.maximum(tried, 1), success)
        # Trials are grouped by image, so each image takes its first trial that placed.
        done, first = np.unique(trials[~stuck], return_index=True)
        centres[done, : placed.shape[1]] = placed[np.flatnonzero(~stuck)[first]]
        pending = pending[~np.isin(pending, done)]
    if pending.size:
        logger.debug(
            "%d of %d images could not place their dots in %dx%d images",
            pending.size,
            counts.size,
            image_size,
            image_size,
        )
    return centres, pending


def _replicas(success: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Return how many attempts each waiting image makes at once in the next pass.

    `success` is the share of attempts at each image's count that placed in the last pass,
    and `budget` the attempts each image has left. Enough replicas that an image places with
    probability _PASS_SUCCESS in this pass, at most _MAX_REPLICAS.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.ceil(np.log1p(-_PASS_SUCCESS) / np.log1p(-np.minimum(success, 1.0)))
    replicas = np.clip(np.nan_to_num(needed, nan=1.0), 1, _MAX_REPLICAS).astype(np.int64)
    return np.minimum(replicas, budget)


def _try_place(
    counts: np.ndarray,
    image_size: int,
    radii: float | np.ndarray,
    spacing: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Place dots one slot at a time and return centres (n, slots, 2) and a stuck mask (n,).

    Slots past an image's count stay NaN. `radii` is one radius in pixels or (n, slots).
    """
    n, slots = counts.size, int(counts.max())
    # Centres of dots of radii a and b must be more than (2 + spacing) * (a + b) / 2 apart.
    # For one radius r this is (2 + spacing) * r, with the default spacing exactly
    # MIN_CENTRE_DISTANCE * r.
    factor = 2 + spacing
    # Axes (y and x, slot, image), so that the dots of earlier slots of the waiting images
    # gather into one (2, slot, waiting) array.
    centres = np.full((2, slots, n), np.nan)
    stuck = np.zeros(n, dtype=bool)

    for slot in range(slots):
        images = np.flatnonzero((counts > slot) & ~stuck)
        if isinstance(radii, float):
            waiting = _Waiting(images, centres[:, :slot, images], radii, image_size, factor)
        else:
            waiting = _Waiting(
                images, centres[:, :slot, images], radii[images, : slot + 1], image_size, factor
            )
        for round_index, candidates in enumerate(_ROUND_CANDIDATES):
            if waiting.images.size == 0:
                break
            if round_index == _UNIFORM_ROUNDS and slot > 0:
                waiting.room = _Room(waiting.placed, waiting.low, waiting.high, waiting.limit)
                # An image without a live cell has no room left for this dot.
                stuck[waiting.images[~waiting.room.any]] = True
                waiting = waiting.subset(waiting.room.any)
                if waiting.images.size == 0:
                    break
            if waiting.room is None:
                drawn = rng.uniform(
                    waiting.low, waiting.high, size=(2, waiting.images.size, candidates)
                )
            else:
                drawn = waiting.room.draw(candidates, rng)
            first, found = _first_fitting(drawn, waiting.placed, waiting.limit)
            index = found.nonzero()[0]
            # Rounds that place no dot or every dot are common, so they skip what follows.
            if index.size == 0:
                continue
            centres[:, slot, waiting.images[index]] = drawn[:, index, first[index]]
            if index.size == waiting.images.size:
                break
            waiting = waiting.subset(~found)
        else:
            stuck[waiting.images] = True
    return centres.transpose(2, 1, 0), stuck


class _Waiting:
    """The images still waiting for the dot of one slot, with what placing it needs.

    `placed` contains their earlier dots as (2, slot, waiting). With one radius for every
    dot, `radius` is that radius in pixels. Otherwise it is (waiting, slot + 1), the radii of
    the earlier dots and of this one.
    """

    def __init__(
        self,
        images: np.ndarray,
        placed: np.ndarray,
        radius: float | np.ndarray,
        image_size: int,
        factor: float,
    ) -> None:
        self.images, self.placed = images, placed
        self.room: _Room | None = None
        if isinstance(radius, float):
            own: float | np.ndarray = radius
            self.limit: float | np.ndarray = (factor * radius) ** 2
        else:
            own = radius[:, -1:]  # (waiting, 1)
            pair = (own + radius[:, :-1]) * 0.5 * factor  # (waiting, slot)
            self.limit = (pair * pair).T  # squared distances, (slot, waiting)
        # A centre lies at least one radius from every border.
        self.low, self.high = own, image_size - own

    def subset(self, keep: np.ndarray) -> _Waiting:
        """Return the images where `keep` is true."""
        waiting = object.__new__(_Waiting)
        waiting.images, waiting.placed = self.images[keep], self.placed[:, :, keep]
        waiting.room = None if self.room is None else self.room.subset(keep)
        if isinstance(self.limit, np.ndarray):
            waiting.limit, waiting.low, waiting.high = (
                self.limit[:, keep],
                self.low[keep],  # type: ignore[index]
                self.high[keep],  # type: ignore[index]
            )
        else:
            waiting.limit, waiting.low, waiting.high = self.limit, self.low, self.high
        return waiting


class _Room:
    """Cells of a grid over each image's allowed centres that the placed dots do not cover.

    The grid splits the square [low, high] of allowed centres into _ROOM_CELLS x _ROOM_CELLS
    equal cells. A cell is dead when all of it lies within the exclusion distance of one
    placed dot, so every free position lies in a live cell. A candidate drawn uniformly from
    the live cells and accepted only when it fits is therefore uniform over the free room.
    """

    def __init__(
        self,
        placed: np.ndarray,
        low: float | np.ndarray,
        high: float | np.ndarray,
        limit: float | np.ndarray,
    ) -> None:
        cells = _ROOM_CELLS
        waiting = placed.shape[2]
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64).reshape(-1), (waiting,))
        high_row = np.broadcast_to(np.asarray(high, dtype=np.float64).reshape(-1), (waiting,))
        self.size = (high_row - self.low) / cells
        # In units of cells from the grid's corner: dot centres (waiting, slot, 1) and the
        # squared exclusion distance.
        low3, size3 = self.low[:, None, None], self.size[:, None, None]
        dot_y = (placed[0].T[:, :, None] - low3) / size3
        dot_x = (placed[1].T[:, :, None] - low3) / size3
        squared = (limit.T[:, :, None] if isinstance(limit, np.ndarray) else limit) / size3**2
        # Row i spans [i, i + 1]. A dot covers the cells of a row whose columns lie within
        # the half-width of its exclusion disc at the row's farther edge: columns first to
        # stop - 1, none where the disc does not reach that edge.
        top = np.arange(cells) - dot_y  # (waiting, slot, cells)
        half = np.sqrt(np.maximum(squared - np.maximum(top * top, (top + 1) ** 2), 0.0))
        first = np.clip(np.ceil(dot_x - half), 0, cells).astype(np.int64)
        stop = np.maximum(np.clip(np.floor(dot_x + half), 0, cells).astype(np.int64), first)
        # Bit j of a row's mask is set when a dot covers the row's cell j.
        bit = np.int64(1)
        dead = np.bitwise_or.reduce((bit << stop) - (bit << first), axis=1)  # (waiting, cells)
        columns = np.arange(cells, dtype=np.int64)
        self.live = (((dead[:, :, None] >> columns) & 1) == 0).reshape(waiting, cells * cells)
        # Each image's cells with the live ones first, in order: (waiting, cells * cells).
        self.order = np.argsort(~self.live, axis=1, kind="stable")
        self.totals = np.count_nonzero(self.live, axis=1)
        self.any = self.totals > 0

    def subset(self, keep: np.ndarray) -> _Room:
        """Return the room of the images where `keep` is true."""
        room = object.__new__(_Room)
        room.low, room.size, room.live = self.low[keep], self.size[keep], self.live[keep]
        room.totals, room.order = self.totals[keep], self.order[keep]
        room.any = self.any[keep]
        return room

    def draw(self, candidates: int, rng: np.random.Generator) -> np.ndarray:
        """Return candidates as (2, waiting, candidates), uniform over each image's live cells."""
        waiting = self.totals.size
        picks = rng.random((3, waiting, candidates))
        chosen = (picks[0] * self.totals[:, None]).astype(np.int64)
        cell = np.take_along_axis(self.order, chosen, axis=1)
        row, column = np.divmod(cell, _ROOM_CELLS)
        low, size = self.low[:, None], self.size[:, None]
        return np.stack([low + (row + picks[1]) * size, low + (column + picks[2]) * size])


def _first_fitting(
    drawn: np.ndarray, placed: np.ndarray, limit: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return each image's first candidate far enough from its placed dots, and whether any is.

    `drawn` is the candidates as (2, waiting, candidates), `placed` the dots so far as
    (2, slot, waiting), and `limit` the squared centre distance to exceed: one float, or
    (slot, waiting) for one value per dot.
    """
    _, waiting, candidates = drawn.shape
    if placed.shape[1] == 0:
        return np.zeros(waiting, dtype=np.int64), np.ones(waiting, dtype=bool)
    # float32 halves the memory that the distances pass through. Its rounding moves a
    # squared distance by less than 0.003 px^2 in images up to 256 px wide, so the limit is
    # raised by _FLOAT32_MARGIN and a candidate that passes keeps its distance in float64.
    drawn32, placed32 = drawn.astype(np.float32), placed.astype(np.float32)
    raised = limit * (1 + _FLOAT32_MARGIN) + _FLOAT32_MARGIN
    # The longer of the two axes goes last, so that numpy's inner loops run long, and the
    # first axis after (y, x) and slot is the one each image's first fit is taken along.
    if candidates >= waiting:
        offsets = drawn32[:, None] - placed32[..., None]  # (2, slot, waiting, candidates)
        per_dot = raised[..., None] if isinstance(raised, np.ndarray) else raised
        along = 1
    else:
        offsets = drawn32.transpose(0, 2, 1)[:, None] - placed32[:, :, None]  # candidates first
        per_dot = raised[:, None] if isinstance(raised, np.ndarray) else raised
        along = 0
    np.multiply(offsets, offsets, out=offsets)
    squared = np.add(offsets[0], offsets[1], out=offsets[0])
    if isinstance(per_dot, np.ndarray):
        fits = (squared > per_dot).all(axis=0)
    else:
        # With one limit for every dot, the nearest dot decides, which takes one pass less.
        fits = np.minimum.reduce(squared, axis=0) > np.float32(per_dot)
    return fits.argmax(axis=along), np.logical_or.reduce(fits, axis=along)


def _draw(
    images: np.ndarray,
    counts: np.ndarray,
    centres: np.ndarray,
    colours: np.ndarray,
    radii: float | np.ndarray,
) -> None:
    """Subtract anti-aliased dots from the background in `images` (n, H, W, 3), slot by slot.

    The background is white, or white plus noise that is reflected afterwards. `radii` is one
    radius in pixels or (n, slots). `images` starts a chunk of _CHUNK_IMAGES images.
    """
    n, image_size = images.shape[0], images.shape[1]
    # Dots in slot order, and in image order within a slot: (dots,) each.
    slots, rows = np.nonzero(np.arange(centres.shape[1])[:, None] < counts)
    if rows.size == 0:
        return

    # A pixel's coverage is the linear ramp clip(radius + 0.5 - distance, 0, 1), so a dot
    # reaches pixels out to radius + 0.5 from its centre, and `patch` pixels span that.
    # Pixel offsets from a dot's centre are float32 and measured from the corner of a window
    # of its chunk's patch, the patch of the chunk's largest dot. Their rounding depends on
    # that corner, so every dot keeps it, whatever window it is drawn in and however many
    # chunks one call draws: the images do not change with either.
    if isinstance(radii, float):
        radius: float | np.ndarray = radii
        edge: np.floating | np.ndarray = np.float32(radii + 0.5)
        largest_patch = min(int(np.ceil(2 * radii + 2)), image_size)
        small = largest_patch
        last_corner: int | np.ndarray = image_size - largest_patch
    else:
        radius = radii[rows, slots]
        edge = (radius + 0.5).astype(np.float32)[:, None, None]
        largest = np.fmax.reduce(radii, axis=1, initial=0.0)  # NaN past each count
        largest = np.fmax.reduceat(largest, np.arange(0, n, _CHUNK_IMAGES))
        chunk_patch = np.minimum(np.ceil(2 * largest + 2), image_size).astype(np.int64)
        largest_patch = int(chunk_patch.max())
        small = _small_window(radii, largest_patch)
        last_corner = image_size - chunk_patch[rows // _CHUNK_IMAGES]
    cy, cx = centres[rows, slots, 0], centres[rows, slots, 1]
    first_y = np.floor(cy - radius - 0.5).astype(np.int64)
    first_x = np.floor(cx - radius - 0.5).astype(np.int64)
    top = np.minimum(np.maximum(first_y, 0), last_corner)
    left = np.minimum(np.maximum(first_x, 0), last_corner)
    ink = 1.0 - colours[rows, slots]  # (dots, 3)

    groups: list[tuple[np.ndarray | slice, int]] = [(slice(None), largest_patch)]
    if small < largest_patch:
        # A dot of radius r covers nothing outside ceil(2 r + 2) pixels from first_y and
        # first_x, so the dots that small are drawn in windows of `small` pixels.
        in_small = np.ceil(2 * radius + 2) <= small
        groups = [(np.flatnonzero(in_small), small), (np.flatnonzero(~in_small), largest_patch)]
    windows = _Windows(images)
    stamps = []
    for group, size in groups:
        group_slots = slots[group]
        if group_slots.size == 0:
            continue
        window_top = np.minimum(np.maximum(first_y[group], 0), image_size - size)
        window_left = np.minimum(np.maximum(first_x[group], 0), image_size - size)
        # The arithmetic for all dots of the group at once, in a few long numpy calls.
        inked = _coverage_times_ink(
            _pixel_offsets(window_top - top[group], size, (top - cy)[group]),
            _pixel_offsets(window_left - left[group], size, (left - cx)[group]),
            edge[group] if isinstance(edge, np.ndarray) else edge,
            ink[group],
        )
        # The group's dots of slot s are those from starts[s] to starts[s + 1].
        starts = np.searchsorted(group_slots, np.arange(centres.shape[1] + 1)).tolist()
        view = windows.of_size(size)
        stamps.append((view, rows[group], window_top, window_left, inked, starts))

    # Subtracting slot by slot, whatever the group, keeps the order in which a pixel that two
    # dots of an image reach gets their inks, and so the rounding.
    for slot in range(centres.shape[1]):
        for view, group_rows, window_top, window_left, inked, starts in stamps:
            dots = slice(starts[slot], starts[slot + 1])
            if dots.start == dots.stop:
                continue
            index = (group_rows[dots], window_top[dots], window_left[dots])
            window = view[index]  # a copy, (dots, size, channels * size)
            window -= inked[dots]
            view[index] = window


def _pixel_offsets(start: np.ndarray, size: int, base: np.ndarray) -> np.ndarray:
    """Return float32 (m, size): pixel centres start + 0.5, start + 1.5, ... plus `base`.

    `start` counts pixels from the corner that `base` (float64: the corner minus the dot's
    centre) belongs to. The centres are exact in float32, so only the sum rounds.
    """
    pixel_centres = (start[:, None] + np.arange(size)).astype(np.float32) + np.float32(0.5)
    return pixel_centres + base.astype(np.float32)[:, None]


def _coverage_times_ink(
    offset_y: np.ndarray, offset_x: np.ndarray, edge: np.floating | np.ndarray, ink: np.ndarray
) -> np.ndarray:
    """Return float32 (m, size, 3 size): each dot's coverage times its ink, channel-last.

    offset_y and offset_x are float32 (m, size): the window's pixel centres minus the
    dot's centre. `edge` is radius + 0.5, one value or (m, 1, 1). `ink` is float32 (m, 3).
    """
    m, size = offset_y.shape
    channels = ink.shape[1]
    # Each column's offset once per channel, so that every array below is laid out like
    # the window's rows.
    across = np.repeat(offset_x, channels, axis=1)
    coverage = offset_y[:, :, None] ** 2 + (across * across)[:, None, :]
    np.sqrt(coverage, out=coverage)
    np.subtract(edge, coverage, out=coverage)
    np.clip(coverage, 0.0, 1.0, out=coverage)
    # Coverages of two dots sum to less than 1 minus their gap in pixels on any pixel,
    # because their edges are farther apart than the gap, so on white, pixels stay
    # within [0, 1].
    coverage *= np.broadcast_to(ink[:, None, :], (m, size, channels)).reshape(m, 1, -1)
    return coverage


# The cost of one more group of dots, counted as pixels drawn per slot: an estimate of a
# few numpy calls per slot. In chunks of 128 images of 1-16 dots with radii of 2.6-6.4
# pixels (15-pixel windows), a second window of 11 pixels saves 3,700 pixels per slot and
# drew 10% faster. Constant-area dots of 2.6-9.6 pixels save 24,000 pixels per slot and
# draw 2.3 times as fast.
_GROUP_OVERHEAD_PIXELS = 1_000


def _small_window(radii: np.ndarray, patch: int) -> int:
    """Return the window size for the smaller dots of a chunk, or `patch` for one size.

    The size minimizes the pixels drawn plus _GROUP_OVERHEAD_PIXELS per slot for a second
    group. `radii` is (n, slots) in pixels, NaN past each image's count.
    """
    present = radii[~np.isnan(radii)]
    sizes = np.minimum(np.ceil(2 * present + 2), patch)
    options = np.unique(sizes)
    fitting = (sizes[:, None] <= options).sum(axis=0)  # dots that fit in each option
    cost = fitting * options**2 + (sizes.size - fitting) * patch**2
    cost += _GROUP_OVERHEAD_PIXELS * radii.shape[1] * (options < patch)
    return int(options[np.argmin(cost)])


class _Windows:
    """Writeable views of images (n, H, W, 3) for each window size.

    Element [i, y, x] of the view for size s is the s x s window at row y and column x of
    image i, as (s, 3 s) rows of channel-last pixels.
    """

    def __init__(self, images: np.ndarray) -> None:
        n, height, width, channels = images.shape
        self._rows = images.reshape(n, height, width * channels)
        self._channels = channels
        self._views: dict[int, np.ndarray] = {}

    def of_size(self, size: int) -> np.ndarray:
        view = self._views.get(size)
        if view is None:
            shape = (size, size * self._channels)
            every_offset = sliding_window_view(self._rows, shape, axis=(1, 2), writeable=True)
            # Windows start at whole pixels, every `channels` values along a row.
            view = every_offset[:, :, :: self._channels]
            self._views[size] = view
        return view


class DotsTrainingSet:
    """Training images for one run, seeded.

    With design.training_images set, a fixed set is drawn once at construction and batches
    sample from it. With None, every batch is rendered fresh.
    """

    def __init__(self, design: DotsDataset, seed: int) -> None:
        check_counts_fit(counts=design.counts, **design.layout_arguments())
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
        return DotsBatch(
            images=self._fixed.images[rows],
            counts=self._fixed.counts[rows],
            mean_radii=self._fixed.mean_radii[rows],
        )

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
