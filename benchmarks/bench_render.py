"""Rendering speed: the vectorized renderer against matplotlib, measured in one run.

Run: python benchmarks/bench_render.py [--images 10240] [--batch 1024] [--mpl-images 150]

Both sides draw 64x64 images with noise 0.03, for each radius and colour mode: 1-16 dots of
radius 0.08 with random colours (the default), constant total area (1-14 dots), radii drawn
from a range, one colour and a palette. The renderer's time covers everything: counts,
radii, placement, colours, drawing and noise. The matplotlib side is one Agg figure reused
for every image: place the dots by rejection sampling in plain Python, remove the previous
Circle patches, add new ones, draw the canvas and copy it into a float array with the same
noise. Its radii and colours are drawn before the clock starts. Two ratios are printed: to
the whole matplotlib job, and to its drawing alone, without the placement. The two sides
take turns, a few passes each, so that both see the same load, and the fastest pass of each
is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from biaslab.datasets.dots import MAX_CHANNEL, DotLayout, render_dots  # noqa: E402
from biaslab.design import DotsDataset  # noqa: E402

IMAGE_SIZE = 64
SIXTEEN = list(range(1, 17))
PALETTE = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3"]
DESIGNS = {
    "fixed 0.08, random colours": DotsDataset(image_size=64, counts=SIXTEEN, noise=0.03),
    # Dots of radius 0.15 / sqrt(k) stay countable (2.5 px) up to k = 14 at 64x64.
    "constant area (0.15 at 1 dot), 1-14 dots": DotsDataset(
        image_size=64,
        counts=SIXTEEN[:14],
        noise=0.03,
        radius_mode="constant_area",
        dot_radius=0.15,
    ),
    "range 0.04-0.1": DotsDataset(
        image_size=64, counts=SIXTEEN, noise=0.03, radius_mode="range", radius_range=(0.04, 0.1)
    ),
    "one colour, spacing 0.5": DotsDataset(
        image_size=64, counts=SIXTEEN, noise=0.03, colour_mode="one", colours=["#000000"]
    ),
    "palette of 4, spacing 0.5": DotsDataset(
        image_size=64, counts=SIXTEEN, noise=0.03, colour_mode="palette", colours=PALETTE
    ),
}


# Tries per dot before the plain Python placement starts an image over. Of 30, 100, 300 and
# 1,000, 300 placed the one-colour and palette designs fastest, at about 500 us per image.
# The other designs took 14-43 us per image with any of them.
PYTHON_TRIES = 300


def python_layout(
    radii: list[float], spacing: float, rng: random.Random
) -> list[tuple[float, float, float]]:
    """Place dots of `radii` one at a time by rejection sampling, as (y, x, radius).

    Each dot tries uniform positions until its edge keeps `spacing` times the mean radius
    from every placed dot. After PYTHON_TRIES misses the image starts over.
    """
    factor = (2 + spacing) / 2
    while True:
        placed: list[tuple[float, float, float]] = []
        for radius in radii:
            for _ in range(PYTHON_TRIES):
                y = rng.uniform(radius, IMAGE_SIZE - radius)
                x = rng.uniform(radius, IMAGE_SIZE - radius)
                if all(
                    (y - other_y) ** 2 + (x - other_x) ** 2 > (factor * (radius + other)) ** 2
                    for other_y, other_x, other in placed
                ):
                    placed.append((y, x, radius))
                    break
            else:
                break
        if len(placed) == len(radii):
            return placed


def renderer_speed(design: DotsDataset, total: int, batch: int) -> tuple[float, float]:
    """Render `total` images in batches of `batch` and return images/s and CPU us per image."""
    rng = np.random.default_rng(0)
    render_dots(design, batch, rng)  # warm up caches and allocator
    calls = max(1, total // batch)
    wall, processor = time.perf_counter(), time.process_time()
    for _ in range(calls):
        render_dots(design, batch, rng)
    elapsed = time.perf_counter() - wall
    cpu = (time.process_time() - processor) / (calls * batch) * 1e6
    return calls * batch / elapsed, cpu


class MatplotlibRenderer:
    """One Agg figure that draws the images of a design with Circle patches."""

    def __init__(self) -> None:
        self.figure = plt.figure(figsize=(1, 1), dpi=IMAGE_SIZE)
        canvas = self.figure.canvas
        assert isinstance(canvas, FigureCanvasAgg), "the Agg backend was not selected"
        self.canvas = canvas
        self.axes = self.figure.add_axes((0, 0, 1, 1))
        self.axes.set_xlim(0, IMAGE_SIZE)
        self.axes.set_ylim(IMAGE_SIZE, 0)
        self.axes.axis("off")

    def close(self) -> None:
        plt.close(self.figure)

    def images_per_second(self, design: DotsDataset, total: int, seed: int) -> tuple[float, float]:
        """Place and draw `total` images, and return images/s for the job and for drawing alone.

        Counts, radii and colours come before the clock.
        """
        rng = np.random.default_rng(seed)
        placement_rng = random.Random(seed)
        layout = DotLayout(**design.layout_arguments())
        counts = rng.choice(design.counts, size=total)
        radii = layout.radii(counts, rng)
        if isinstance(radii, float):
            radii = np.full((total, int(counts.max())), radii)
        radius_lists = [radii[index, : counts[index]].tolist() for index in range(total)]
        palette = design.rgb_colours()
        slots = radii.shape[1]
        if palette is None:
            colours = rng.uniform(0.0, MAX_CHANNEL, size=(total, slots, 3))
        else:
            colours = np.asarray(palette)[rng.integers(0, len(palette), (total, slots))]
        images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)

        placing = 0.0
        start = time.perf_counter()
        for index in range(total):
            placed_at = time.perf_counter()
            dots = python_layout(radius_lists[index], design.spacing, placement_rng)
            placing += time.perf_counter() - placed_at
            for patch in list(self.axes.patches):
                patch.remove()
            for slot, (y, x, radius) in enumerate(dots):
                self.axes.add_patch(Circle((x, y), radius, color=colours[index, slot]))
            self.canvas.draw()
            pixels = np.asarray(self.canvas.buffer_rgba())[..., :3] / np.float32(255)
            pixels = pixels + rng.normal(0.0, design.noise, pixels.shape)
            images[index] = 1 - np.abs(1 - np.abs(pixels))
        elapsed = time.perf_counter() - start
        return total / elapsed, total / (elapsed - placing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=10_240, help="renderer images per pass at the large batch"
    )
    parser.add_argument("--batch", type=int, default=1024, help="renderer images per call")
    parser.add_argument("--mpl-images", type=int, default=150, help="matplotlib images per pass")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="passes per side and mode, taken in turns, of which the fastest per side is reported",
    )
    arguments = parser.parse_args()

    load_before = os.getloadavg()[0]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, matplotlib {matplotlib.__version__}, "
        f"load average {load_before:.2f}"
    )
    print(
        f"64x64 images, noise 0.03; renderer and matplotlib take turns, {arguments.repeats} "
        "passes each per mode; ratio: renderer at the large batch / matplotlib\n"
    )
    print(
        f"| mode | renderer, batch {arguments.batch} | CPU per image | renderer, batch 64 "
        "| matplotlib with Python placement | ratio | matplotlib drawing alone | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    matplotlib_renderer = MatplotlibRenderer()
    whole_ratios, drawing_ratios = [], []
    for name, design in DESIGNS.items():
        fast, cpu, small, whole, drawing = 0.0, float("inf"), 0.0, 0.0, 0.0
        for repeat in range(arguments.repeats):
            rate, processor = renderer_speed(design, arguments.images, arguments.batch)
            if rate > fast:
                fast, cpu = rate, processor
            small = max(small, renderer_speed(design, arguments.images // 4, 64)[0])
            job, draw = matplotlib_renderer.images_per_second(design, arguments.mpl_images, repeat)
            whole, drawing = max(whole, job), max(drawing, draw)
        whole_ratios.append(fast / whole)
        drawing_ratios.append(fast / drawing)
        print(
            f"| {name} | {fast:,.0f} images/s | {cpu:.0f} us | {small:,.0f} images/s | "
            f"{whole:,.1f} images/s | {fast / whole:,.0f}x | {drawing:,.1f} images/s | "
            f"{fast / drawing:,.0f}x |"
        )
    matplotlib_renderer.close()
    print(
        f"\nsmallest ratio {min(whole_ratios):,.0f}x to the whole job (target 100x), "
        f"{min(drawing_ratios):,.0f}x to drawing alone; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
