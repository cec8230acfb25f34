"""Pie rendering speed: the vectorized renderer against a per-pixel Python loop, in one run.

Run: python benchmarks/bench_render_pie.py [--images 20000] [--batch 1024] [--loop-images 40]

Both sides draw 64x64 pies with random size, position and red share (values 1-9), a random
start angle and noise 0.03. The loop is the straightforward way: for each pixel, its
distance and angle from the centre give the disc's coverage and the wedge colours on either
side of the nearest border, with the same anti-aliasing as the renderer. Its noise is one
numpy draw per image, and its values and angles are drawn before the clock starts, so the
ratio is, if anything, on the low side. Before timing, the loop's noise-free images are
compared with the renderer's, to show that both draw the same pies. The dots renderer's
rate in the same run is printed as a reference for the machine's load.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np

from biaslab.datasets.dots import render_dots
from biaslab.datasets.pie import PALETTE, quantity_of_value, render_pies, wedge_colours
from biaslab.design import DotsDataset
from biaslab.design.pie import OFFSET_RANGE, RED_SHARE_RANGE, SIZE_RANGE

IMAGE_SIZE = 64
NOISE = 0.03


def renderer_speed(colours: int, total: int, batch: int, repeats: int) -> tuple[float, float]:
    """Return the best rate in images/s over `repeats` runs of `total` images in batches of
    `batch`, and the least CPU time per image in microseconds (all threads together)."""
    rng = np.random.default_rng(0)
    render(rng.integers(1, 10, size=(batch, 4)), colours, NOISE, rng)  # warm up
    best, cpu = 0.0, float("inf")
    images = (total // batch) * batch
    for _ in range(repeats):
        wall, processor = time.perf_counter(), time.process_time()
        for _ in range(total // batch):
            # Drawing the values is part of the renderer's work.
            render(rng.integers(1, 10, size=(batch, 4)), colours, NOISE, rng)
        best = max(best, images / (time.perf_counter() - wall))
        cpu = min(cpu, (time.process_time() - processor) / images * 1e6)
    return best, cpu


def dots_speed(total: int, batch: int, repeats: int) -> tuple[float, float]:
    """Time the dots renderer on the same machine and load, as a reference for the pies."""
    design = DotsDataset(image_size=IMAGE_SIZE, counts=list(range(1, 17)), noise=NOISE)
    rng = np.random.default_rng(6)
    render_dots(design, batch, rng)  # warm up
    best, cpu = 0.0, float("inf")
    images = (total // batch) * batch
    for _ in range(repeats):
        wall, processor = time.perf_counter(), time.process_time()
        for _ in range(total // batch):
            render_dots(design, batch, rng)
        best = max(best, images / (time.perf_counter() - wall))
        cpu = min(cpu, (time.process_time() - processor) / images * 1e6)
    return best, cpu


def render(values: np.ndarray, colours: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    return render_pies(
        values,
        image_size=IMAGE_SIZE,
        colours=colours,
        noise=noise,
        random_rotation=True,
        rng=rng,
    )


def loop_render(values: np.ndarray, starts: np.ndarray, colours: int, noise: float, seed: int):
    """Render pies pixel by pixel in Python, as float32 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    ink = [tuple(1.0 - channel for channel in PALETTE[name]) for name in wedge_colours(colours)]
    half = IMAGE_SIZE / 2
    images = np.empty((len(values), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for index, (size, x, y, red) in enumerate(values):
        radius = float(quantity_of_value(size, SIZE_RANGE)) * half
        centre_x = half + float(quantity_of_value(x, OFFSET_RANGE)) * half
        centre_y = half + float(quantity_of_value(y, OFFSET_RANGE)) * half
        borders, cut = wedge_borders(float(quantity_of_value(red, RED_SHARE_RANGE)), len(ink))
        image = 1.0 + rng.normal(0.0, noise, (IMAGE_SIZE, IMAGE_SIZE, 3)) if noise else None
        for row in range(IMAGE_SIZE):
            for column in range(IMAGE_SIZE):
                dx = column + 0.5 - centre_x
                dy = row + 0.5 - centre_y
                distance = math.hypot(dx, dy)
                coverage = min(max(radius + 0.5 - distance, 0.0), 1.0)
                colour = list(ink[-1])
                if len(ink) > 1:
                    angle = (math.atan2(dy, dx) - starts[index] - cut) % (2 * math.pi)
                    for k, border in enumerate(borders):
                        past = min(max(distance * (angle - border) + 0.5, 0.0), 1.0)
                        for channel in range(3):
                            colour[channel] += past * (ink[k][channel] - ink[k - 1][channel])
                for channel in range(3):
                    base = 1.0 if image is None else image[row, column, channel]
                    value = base - coverage * colour[channel]
                    # Reflect the noisy value into [0, 1].
                    images[index, row, column, channel] = 1.0 - abs(1.0 - abs(value))
    return images


def wedge_borders(red_share: float, wedges: int) -> tuple[list[float], float]:
    """Return the wedges' first borders as angles past the cut, and the cut past the start.

    The cut is the middle of the last wedge, as in the renderer.
    """
    if wedges == 1:
        return [], 0.0
    share = (1.0 - red_share) / (wedges - 1)
    starts = [0.0, red_share] + [red_share + share * k for k in range(1, wedges - 1)]
    cut = 2 * math.pi * (1.0 - share / 2)
    return [2 * math.pi * start + 2 * math.pi - cut for start in starts], cut


def loop_images_per_second(colours: int, total: int) -> float:
    rng = np.random.default_rng(1)
    values = rng.integers(1, 10, size=(total, 4))
    starts = rng.uniform(0.0, 2 * np.pi, size=total)
    start = time.perf_counter()
    loop_render(values, starts, colours, NOISE, seed=2)
    return total / (time.perf_counter() - start)


def largest_difference(colours: int) -> float:
    """Return the largest pixel difference between the loop and the renderer, without noise."""
    values = np.random.default_rng(3).integers(1, 10, size=(8, 4))
    rng = np.random.default_rng(4)
    starts = np.asarray(rng.uniform(0.0, 2 * np.pi, size=8))
    vectorized = render(values, colours, 0.0, np.random.default_rng(4))
    looped = loop_render(values, starts, colours, 0.0, seed=5)
    return float(np.abs(vectorized - looped).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="renderer images per run")
    parser.add_argument("--batch", type=int, default=1024, help="renderer images per call")
    parser.add_argument(
        "--repeats", type=int, default=3, help="number of renderer runs; the fastest is reported"
    )
    parser.add_argument("--loop-images", type=int, default=40, help="per-pixel loop images")
    arguments = parser.parse_args()

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"64x64 pies, values 1-9 at random, random start angle, noise {NOISE}")
    print(f"{'colours':<9}{'renderer':<46}{'batch 64':<20}{'per-pixel loop':<22}ratio")
    for colours in (2, 4):
        difference = largest_difference(colours)
        if difference > 1e-4:
            raise SystemExit(f"{colours} colours: the loop and the renderer differ by {difference}")
        fast, cpu = renderer_speed(colours, arguments.images, arguments.batch, arguments.repeats)
        small, _ = renderer_speed(colours, arguments.images // 4, 64, arguments.repeats)
        slow = loop_images_per_second(colours, arguments.loop_images)
        print(
            f"{colours:<9}{fast:>9,.0f} images/s (batch {arguments.batch}, {cpu:.0f} us CPU each) "
            f"{small:>9,.0f} images/s {slow:>11,.1f} images/s {fast / slow:>9,.0f}x"
        )
    reference, reference_cpu = dots_speed(arguments.images, arguments.batch, arguments.repeats)
    print(
        f"reference, render_dots of 64x64 images of 1-16 dots in the same run: "
        f"{reference:,.0f} images/s (batch {arguments.batch}, {reference_cpu:.0f} us CPU each)"
    )
    print(f"load average after the run {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
