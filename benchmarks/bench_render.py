"""Rendering speed: the vectorized renderer against matplotlib, measured in one run.

Run: python benchmarks/bench_render.py [--images 20000] [--batch 1024] [--mpl-images 300]

Both sides draw 64x64 images with noise 0.03, for each radius and colour mode: 1-16 dots of
radius 0.08 with random colours (the default), constant total area (1-14 dots), radii drawn
from a range, one colour and a palette. The renderer's time covers everything: counts,
radii, placement, colours, drawing and noise. The matplotlib side is one Agg figure reused
for every image: remove the previous Circle patches, add new ones, draw the canvas and copy
it into a float array with the same noise. Its radii, positions and colours are drawn before
the clock starts, so the ratio is, if anything, on the low side.
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

from biaslab.datasets.dots import MAX_CHANNEL, DotLayout, place_dots, render_dots  # noqa: E402
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


def renderer_images_per_second(design: DotsDataset, total: int, batch: int, repeats: int) -> float:
    """Return the best rate over `repeats` runs of `total` images in batches of `batch`."""
    rng = np.random.default_rng(0)
    render_dots(design, batch, rng)  # warm up caches and allocator
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(total // batch):
            render_dots(design, batch, rng)
        best = max(best, (total // batch) * batch / (time.perf_counter() - start))
    return best


def matplotlib_images_per_second(design: DotsDataset, total: int) -> float:
    rng = np.random.default_rng(0)
    layout = DotLayout(**design.layout_arguments())
    counts = rng.choice(design.counts, size=total)
    radii = layout.radii(counts, rng)
    if isinstance(radii, float):
        radii = np.full((total, int(counts.max())), radii)
    centres = place_dots(
        counts, image_size=IMAGE_SIZE, radius=radii, rng=rng, min_spacing=design.spacing
    )
    palette = design.rgb_colours()
    if palette is None:
        colours = rng.uniform(0.0, MAX_CHANNEL, size=(total, centres.shape[1], 3))
    else:
        colours = np.asarray(palette)[rng.integers(0, len(palette), (total, centres.shape[1]))]
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
        for slot in range(counts[index]):
            y, x = centres[index, slot]
            axes.add_patch(Circle((x, y), radii[index, slot], color=colours[index, slot]))
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3] / np.float32(255)
        pixels = pixels + rng.normal(0.0, design.noise, pixels.shape)
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
    print(
        "64x64 images of 1-16 dots, noise 0.03; ratio: renderer at the large batch / matplotlib\n"
    )
    print(f"| mode | renderer, batch {arguments.batch} | renderer, batch 64 | matplotlib | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, design in DESIGNS.items():
        fast = renderer_images_per_second(
            design, arguments.images, arguments.batch, arguments.repeats
        )
        small = renderer_images_per_second(design, arguments.images // 4, 64, arguments.repeats)
        slow = matplotlib_images_per_second(design, arguments.mpl_images)
        print(
            f"| {name} | {fast:,.0f} images/s | {small:,.0f} images/s | "
            f"{slow:,.1f} images/s | {fast / slow:,.0f}x |"
        )


if __name__ == "__main__":
    main()
