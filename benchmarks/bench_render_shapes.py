"""The shapes renderer and probe: speed against two straightforward renderers, and accuracy.

Run: python benchmarks/bench_render_shapes.py [--images 20000] [--mpl-images 300]
     [--loop-images 20] [--accuracy-images 3000]

Speed, side by side in one run, on 64x64 images of two objects (all 6 shapes and 6 colours,
noise 0.03, largest size and position jitter):

- the renderer, `render_shapes`: combinations, sizes, positions, drawing and noise;
- matplotlib: one Agg figure reused for every image. For each image it removes the previous
  patches, adds a Circle or Polygon patch per object, draws the canvas and copies it into a
  float array with the same reflected noise;
- a per-pixel Python loop: for each pixel, test whether its centre lies inside each object
  (no anti-aliasing), then add the same noise with numpy.

Both slow ways get their shapes, colours, sizes and positions before their clocks start, so
their rates are, if anything, on the high side. The probe, `read_objects`, is timed on
renders at 64x64 and 32x32. Each rate is given per second of wall-clock time and per second
of this process's CPU time, all threads together. When other processes share the cores,
the CPU figure changes less.

Accuracy: the share of objects whose shape and colour the probe reads as drawn, reads as
another, or leaves unrecognized. Rows cover fresh renders for each image size, noise and
jitter, and renders blurred by a Gaussian as a stand-in for blurry samples.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass

import matplotlib
import numpy as np
from scipy import ndimage

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import Circle, Polygon  # noqa: E402

from biaslab.datasets.shapes import (  # noqa: E402
    COLOUR_RGB,
    NOMINAL_RADIUS,
    POLYGONS,
    render_objects,
    render_shapes,
    size_factors,
)
from biaslab.design.shapes import (  # noqa: E402
    COLOURS,
    MAX_POSITION_JITTER,
    MAX_SIZE_JITTER,
    SHAPES,
    ShapesDataset,
)
from biaslab.probes.shapes import read_objects  # noqa: E402

DESIGN = ShapesDataset(
    image_size=64,
    shapes=list(SHAPES),
    colours=list(COLOURS),
    noise=0.03,
    size_jitter=MAX_SIZE_JITTER,
    position_jitter=MAX_POSITION_JITTER,
)
IMAGE_SIZE = DESIGN.image_size


@dataclass(frozen=True)
class Rate:
    """Images per second of wall-clock time, and per second of this process's CPU time."""

    wall: float
    # CPU time adds up every thread, so on idle cores it does not depend on other processes.
    cpu: float


class Stopwatch:
    """Wall-clock and process CPU time since construction."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def rate(self, images: int) -> Rate:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return Rate(wall=images / wall, cpu=images / max(cpu, 1e-9))


def fastest(rates: list[Rate]) -> Rate:
    return Rate(wall=max(rate.wall for rate in rates), cpu=max(rate.cpu for rate in rates))


def renderer_images_per_second(total: int, batch: int, repeats: int) -> Rate:
    """Return the best rates over `repeats` runs of `total` images in batches of `batch`."""
    rng = np.random.default_rng(0)
    render_shapes(DESIGN, batch, rng)  # warm up the mask cache and the allocator
    rates = []
    for _ in range(repeats):
        stopwatch = Stopwatch()
        for _ in range(total // batch):
            render_shapes(DESIGN, batch, rng)
        rates.append(stopwatch.rate((total // batch) * batch))
    return fastest(rates)


def draw_objects(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw shapes, colours, radii in pixels and centres (y, x) as the renderer does."""
    radii = NOMINAL_RADIUS * IMAGE_SIZE * rng.choice(size_factors(DESIGN.size_jitter), (n, 2))
    shift = math.floor(DESIGN.position_jitter * IMAGE_SIZE)
    centres = rng.integers(-shift, shift + 1, size=(n, 2, 2)).astype(float)
    centres[:, :, 0] += IMAGE_SIZE / 2
    centres[:, :, 1] += [IMAGE_SIZE / 4, 3 * IMAGE_SIZE / 4]
    return {
        "shapes": rng.integers(0, len(SHAPES), size=(n, 2)),
        "colours": rng.integers(0, len(COLOURS), size=(n, 2)),
        "radii": radii,
        "centres": centres,
    }


def add_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add the renderer's noise, reflected at 0 and 1, to one image."""
    noisy = pixels + rng.normal(0.0, DESIGN.noise, pixels.shape)
    return 1 - np.abs(1 - np.abs(noisy))


def matplotlib_images_per_second(total: int) -> Rate:
    rng = np.random.default_rng(0)
    objects = draw_objects(total, rng)
    images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)

    figure = plt.figure(figsize=(1, 1), dpi=IMAGE_SIZE)
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg), "the Agg backend was not selected"
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, IMAGE_SIZE)
    axes.set_ylim(IMAGE_SIZE, 0)
    axes.axis("off")
    stopwatch = Stopwatch()
    for index in range(total):
        for patch in list(axes.patches):
            patch.remove()
        for side in range(2):
            name = SHAPES[objects["shapes"][index, side]]
            colour = COLOUR_RGB[objects["colours"][index, side]]
            radius = objects["radii"][index, side]
            centre_y, centre_x = objects["centres"][index, side]
            if name == "circle":
                axes.add_patch(Circle((centre_x, centre_y), radius, color=colour))
            else:
                outline = POLYGONS[name] * radius + (centre_x, centre_y)
                axes.add_patch(Polygon(outline, closed=True, color=colour))
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3] / np.float32(255)
        images[index] = add_noise(pixels, rng)
    rate = stopwatch.rate(total)
    plt.close(figure)
    return rate


OUTLINES = {name: [tuple(map(float, vertex)) for vertex in POLYGONS[name]] for name in POLYGONS}


def inside(name: str, x: float, y: float) -> bool:
    """Return whether (x, y), in units of the object's radius, lies inside, in plain Python."""
    if name == "circle":
        return x * x + y * y <= 1.0
    outline = OUTLINES[name]
    result = False
    for (x1, y1), (x2, y2) in zip(outline, outline[1:] + outline[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def loop_images_per_second(total: int) -> Rate:
    rng = np.random.default_rng(0)
    objects = draw_objects(total, rng)
    images = np.empty((total, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    stopwatch = Stopwatch()
    for index in range(total):
        pixels = np.ones((IMAGE_SIZE, IMAGE_SIZE, 3))
        for row in range(IMAGE_SIZE):
            for column in range(IMAGE_SIZE):
                for side in range(2):
                    radius = objects["radii"][index, side]
                    centre_y, centre_x = objects["centres"][index, side]
                    x = (column + 0.5 - centre_x) / radius
                    y = (row + 0.5 - centre_y) / radius
                    name = SHAPES[objects["shapes"][index, side]]
                    if inside(name, x, y):
                        pixels[row, column] = COLOUR_RGB[objects["colours"][index, side]]
        images[index] = add_noise(pixels, rng)
    return stopwatch.rate(total)


def probe_images_per_second(image_size: int, total: int, repeats: int) -> Rate:
    rng = np.random.default_rng(1)
    images = render_objects(
        rng.integers(0, len(SHAPES), size=(total, 2)),
        rng.integers(0, len(COLOURS), size=(total, 2)),
        image_size=image_size,
        noise=0.03,
        size_jitter=MAX_SIZE_JITTER,
        position_jitter=MAX_POSITION_JITTER,
        rng=rng,
    )
    read_objects(images[:256])  # build the templates
    rates = []
    for _ in range(repeats):
        stopwatch = Stopwatch()
        read_objects(images)
        rates.append(stopwatch.rate(total))
    return fastest(rates)


def accuracy_row(
    image_size: int, noise: float, jitter: bool, blur: float, n: int, seed: int
) -> str:
    """Return one table row: exact, wrong and unrecognized shares of shapes and colours."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(0, len(SHAPES), size=(n, 2))
    colours = rng.integers(0, len(COLOURS), size=(n, 2))
    images = render_objects(
        shapes,
        colours,
        image_size=image_size,
        noise=noise,
        size_jitter=MAX_SIZE_JITTER if jitter else 0.0,
        position_jitter=MAX_POSITION_JITTER if jitter else 0.0,
        rng=rng,
    )
    if blur > 0:
        images = ndimage.gaussian_filter(images, sigma=(0, blur, blur, 0))
    readings = read_objects(images)
    cells = [f"{image_size}x{image_size}", f"{noise:g}", "largest" if jitter else "none"]
    cells.append(f"{blur:g}" if blur else "none")
    for truth, read in ((shapes, readings.shapes), (colours, readings.colours)):
        unrecognized = np.isnan(read)
        shares = ((read == truth).mean(), (~unrecognized & (read != truth)).mean())
        cells += [f"{100 * share:.2f}%" for share in (*shares, unrecognized.mean())]
    return "| " + " | ".join(cells) + " |"


def print_accuracy(n: int) -> None:
    print(f"\nAccuracy per object, {n} images (2 objects each) per row")
    print(
        "| image | noise | jitter | blur sigma (px) | shape exact | shape wrong | "
        "shape unrecognized | colour exact | colour wrong | colour unrecognized |"
    )
    print("| --- " * 10 + "|")
    seed = 0
    for blur in (0.0, 0.5, 1.0, 1.5, 2.0):
        for image_size in (32, 64):
            noises = (0.0, 0.03, 0.1) if blur == 0 else (0.03,)
            for noise in noises:
                for jitter in (False, True):
                    seed += 1
                    print(accuracy_row(image_size, noise, jitter, blur, n, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="renderer images per run")
    parser.add_argument("--batch", type=int, default=1024, help="renderer images per call")
    parser.add_argument(
        "--repeats", type=int, default=3, help="renderer and probe runs; the fastest is reported"
    )
    parser.add_argument("--mpl-images", type=int, default=300, help="matplotlib images")
    parser.add_argument("--loop-images", type=int, default=20, help="per-pixel loop images")
    parser.add_argument("--probe-images", type=int, default=8192, help="probe images per run")
    parser.add_argument(
        "--accuracy-images", type=int, default=3000, help="images per accuracy row; 0 skips"
    )
    arguments = parser.parse_args()

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, matplotlib {matplotlib.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"64x64 images of 2 objects, {len(SHAPES)} shapes, {len(COLOURS)} colours, "
        f"noise {DESIGN.noise}, size jitter {DESIGN.size_jitter}, "
        f"position jitter {DESIGN.position_jitter}"
    )
    fast = renderer_images_per_second(arguments.images, arguments.batch, arguments.repeats)
    small = renderer_images_per_second(arguments.images // 4, 64, arguments.repeats)
    slow = {
        "matplotlib patches": matplotlib_images_per_second(arguments.mpl_images),
        "per-pixel loop": loop_images_per_second(arguments.loop_images),
    }
    probe = {
        size: probe_images_per_second(size, arguments.probe_images, arguments.repeats)
        for size in (64, 32)
    }
    print(f"{'':<28}{'images/s':>12}{'per CPU second':>16}")
    rows = [(f"renderer, batch {arguments.batch}", fast), ("renderer, batch 64", small)]
    rows += list(slow.items())
    rows += [(f"probe, {size}x{size}", rate) for size, rate in probe.items()]
    for name, rate in rows:
        print(f"{name:<28}{rate.wall:>12,.1f}{rate.cpu:>16,.1f}")
    for name, rate in slow.items():
        print(
            f"renderer / {name}: {fast.wall / rate.wall:,.0f}x in wall-clock time, "
            f"{fast.cpu / rate.cpu:,.0f}x in CPU time"
        )
    if arguments.accuracy_images:
        print_accuracy(arguments.accuracy_images)


if __name__ == "__main__":
    main()
