"""Rendering speed: the vectorized renderer against matplotlib, measured in one run.

Run: python benchmarks/bench_render.py [--images 20000] [--batch 1024] [--mpl-images 300]

Both sides draw 64x64 images of 1-16 dots (radius 0.08 of the width) with noise 0.03. The
renderer's time covers everything: counts, placement, colours, drawing and noise. The
matplotlib side is one Agg figure reused for every image: remove the previous Circle
patches, add new ones, draw the canvas and copy it into a float array with the same noise.
Its positions and colours are drawn before the clock starts, so the ratio is, if anything,
on the low side.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from biaslab.datasets.dots import MAX_CHANNEL, place_dots, render_dots  # noqa: E402
from biaslab.design import DotsDataset  # noqa: E402

DESIGN = DotsDataset(image_size=64, counts=list(range(1, 17)), noise=0.03)
IMAGE_SIZE = DESIGN.image_size


def renderer_images_per_second(total: int, batch: int, repeats: int) -> float:
    """Return the best rate over `repeats` runs of `total` images in batches of `batch`."""
    rng = np.random.default_rng(0)
    render_dots(DESIGN, batch, rng)  # warm up caches and allocator
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(total // batch):
            render_dots(DESIGN, batch, rng)
        best = max(best, (total // batch) * batch / (time.perf_counter() - start))
    return best


def matplotlib_images_per_second(total: int) -> float:
    rng = np.random.default_rng(0)
    radius = DESIGN.dot_radius * IMAGE_SIZE
    counts = rng.choice(DESIGN.counts, size=total)
    centres = place_dots(counts, image_size=IMAGE_SIZE, radius=radius, rng=rng)
    colours = rng.uniform(0.0, MAX_CHANNEL, size=(total, centres.shape[1], 3))
    images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)

    figure = plt.figure(figsize=(1, 1), dpi=IMAGE_SIZE)
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg), "the Agg backend was not selected"
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, IMAGE_SIZE)
    axes.set_ylim(IMAGE_SIZE, 0)
    axes.axis("off")
    start = time.perf_counter()
    for index in range(total):
        for patch in list(axes.patches):
            patch.remove()
        for (y, x), colour in zip(centres[index, : counts[index]], colours[index], strict=False):
            axes.add_patch(Circle((x, y), radius, color=colour))
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3] / np.float32(255)
        pixels = pixels + rng.normal(0.0, DESIGN.noise, pixels.shape)
        images[index] = 1 - np.abs(1 - np.abs(pixels))
    elapsed = time.perf_counter() - start
    plt.close(figure)
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="renderer images per run")
    parser.add_argument("--batch", type=int, default=1024, help="renderer images per call")
    parser.add_argument(
        "--repeats", type=int, default=3, help="number of renderer runs; the fastest is reported"
    )
    parser.add_argument("--mpl-images", type=int, default=300, help="matplotlib images")
    arguments = parser.parse_args()

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, matplotlib {matplotlib.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"64x64 images of 1-16 dots, radius {DESIGN.dot_radius}, noise {DESIGN.noise}")
    fast = renderer_images_per_second(arguments.images, arguments.batch, arguments.repeats)
    slow = matplotlib_images_per_second(arguments.mpl_images)
    print(f"{'renderer':<34}{'matplotlib':<22}ratio")
    print(
        f"{fast:>9,.0f} images/s (batch {arguments.batch:<5}) {slow:>9,.1f} images/s"
        f"{'':<6}{fast / slow:,.0f}x"
    )
    small = renderer_images_per_second(arguments.images // 4, 64, arguments.repeats)
    print(f"{small:>9,.0f} images/s (batch 64)")


if __name__ == "__main__":
    main()
