"""The dot-count probe: speed, and exact-count accuracy on rendered and blurred images.

Run: python benchmarks/bench_probe.py [--images 10000] [--speed-images 8192]

Speed: count_dots, and read_dots (counts and dot sizes), on 64x64 and 32x32 renders of 1-12
dots with noise 0.03, float and uint8 input, the best of several passes. Accuracy: the share
of images whose count is exact, unrecognized, or wrong, on fresh renders of 1-12 dots (fewer
where 12 do not fit) for each image size, noise and radius, then for each radius and colour
mode with the error of the mean dot radius. Blurred renders show what becomes of blurry
samples.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
from probe_cli import parse_arguments, print_machine
from scipy import ndimage

from biaslab.analysis.histogram import UNRECOGNIZED
from biaslab.datasets.dots import largest_count_that_fits, render_counts, render_dots
from biaslab.design import DotsDataset
from biaslab.images import to_uint8
from biaslab.probes.count import count_dots, read_dots

DEFAULT_RADIUS = 0.08
MAX_COUNT = 12
# Images per second that count_dots is to reach at 64x64 on 2 cores.
TARGET_RATE = 20_000
PALETTE = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3"]
# Designs of the mode table: (label, fields). Counts are 1-12 unless the fields set others.
MODE_DESIGNS: list[tuple[str, dict[str, object]]] = [
    ("constant area, 0.15 at 1 dot", {"radius_mode": "constant_area", "dot_radius": 0.15}),
    # At 32x32 dots of radius 0.15 / sqrt(k) stay countable (2.5 px) up to k = 3.
    (
        "constant area, 0.15 at 1 dot",
        {"radius_mode": "constant_area", "dot_radius": 0.15, "counts": [1, 2, 3]},
    ),
    ("range 0.04-0.12", {"radius_mode": "range", "radius_range": (0.04, 0.12)}),
    ("range 0.08-0.1", {"radius_mode": "range", "radius_range": (0.08, 0.1)}),
    ("range 0.08-0.12", {"radius_mode": "range", "radius_range": (0.08, 0.12)}),
    ("one colour #000000", {"colour_mode": "one", "colours": ["#000000"]}),
    ("one colour #e5e5e5 (palest)", {"colour_mode": "one", "colours": ["#e5e5e5"]}),
    ("one colour #ffff00", {"colour_mode": "one", "colours": ["#ffff00"]}),
    ("palette of 4", {"colour_mode": "palette", "colours": PALETTE}),
    (
        "range 0.04-0.1, one colour #808080",
        {
            "radius_mode": "range",
            "radius_range": (0.04, 0.1),
            "colour_mode": "one",
            "colours": ["#808080"],
        },
    ),
    (
        "constant area, palette of 2",
        {
            "radius_mode": "constant_area",
            "dot_radius": 0.15,
            "colour_mode": "palette",
            "colours": PALETTE[:2],
        },
    ),
]


def images_per_second(
    images: np.ndarray, repeats: int, read: Callable[[np.ndarray, float], object] = count_dots
) -> float:
    read(images[:64], DEFAULT_RADIUS)  # warm up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        read(images, DEFAULT_RADIUS)
        best = max(best, images.shape[0] / (time.perf_counter() - start))
    return best


def outcome_shares(found: np.ndarray, counts: np.ndarray) -> tuple[float, float, float, float]:
    """Return the shares of exact, unrecognized, too low and too high counts."""
    recognized = found != UNRECOGNIZED
    return (
        float((found == counts).mean()),
        float((~recognized).mean()),
        float((recognized & (found < counts)).mean()),
        float((found > counts).mean()),
    )


def print_row(label: str, shares: tuple[float, float, float, float]) -> None:
    exact, unrecognized, low, high = shares
    print(
        f"| {label} | {100 * exact:.2f}% | {100 * unrecognized:.2f}% | "
        f"{100 * low:.2f}% | {100 * high:.2f}% |"
    )


def accuracy_tables(n: int) -> None:
    rng = np.random.default_rng(2024)
    header = "| exact | unrecognized | too low | too high |"
    print(f"\nExact-count accuracy, {n:,} renders per row, 1-{MAX_COUNT} dots uniform\n")
    print(f"| image size, noise, radius, counts {header}")
    print("| --- | --- | --- | --- | --- |")
    for radius in (DEFAULT_RADIUS, 0.04, 0.06, 0.10, 0.12, 0.15):
        for size in (32, 64):
            top = min(MAX_COUNT, largest_count_that_fits(image_size=size, dot_radius=radius))
            for noise in (0.0, 0.03):
                counts = rng.integers(1, top + 1, n)
                images = render_counts(
                    counts, image_size=size, dot_radius=radius, noise=noise, rng=rng
                )
                shares = outcome_shares(count_dots(images, radius), counts)
                print_row(f"{size}x{size}, {noise}, {radius}, 1-{top}", shares)

    print(f"\nGaussian-blurred renders (noise 0), {n // 4:,} per row, 1-6 dots\n")
    print(f"| image size, radius, blur sigma in pixels {header}")
    print("| --- | --- | --- | --- | --- |")
    for radius in (DEFAULT_RADIUS, 0.1):
        for size in (32, 64):
            for sigma in (0.5, 1.0, 1.5, 2.0, 3.0):
                counts = rng.integers(1, 7, n // 4)
                images = render_counts(
                    counts, image_size=size, dot_radius=radius, noise=0.0, rng=rng
                )
                scaled_sigma = sigma * size / 32
                blurred = ndimage.gaussian_filter(images, sigma=(0, scaled_sigma, scaled_sigma, 0))
                shares = outcome_shares(count_dots(blurred, radius), counts)
                print_row(f"{size}x{size}, {radius}, {scaled_sigma:g}", shares)


def mode_table(n: int) -> None:
    rng = np.random.default_rng(2025)
    print(f"\nRadius and colour modes, noise 0.03, {n:,} renders per row\n")
    print(
        "| mode, image size, counts | exact | unrecognized | too low | too high "
        "| radius error, median | radius error, 95th percentile |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, fields in MODE_DESIGNS:
        for size in (32, 64):
            try:
                design = DotsDataset.model_validate(
                    {"image_size": size, "counts": list(range(1, 13)), "noise": 0.03, **fields}
                )
            except ValueError as rejected:
                reason = str(rejected).splitlines()[1].strip()[:90]
                print(f"| {label}, {size}x{size} | rejected: {reason} | | | | | |")
                continue
            top = max(design.counts)
            batch = render_dots(design, n, rng)
            reading = read_dots(batch.images, design.radius_bounds())
            shares = outcome_shares(reading.counts, batch.counts)
            exact = reading.counts == batch.counts
            radius_error = np.abs(reading.mean_radii[exact] / batch.mean_radii[exact] - 1)
            median, high_percentile = np.percentile(radius_error, [50, 95])
            exact_share, unrecognized, low, high = shares
            print(
                f"| {label}, {size}x{size}, 1-{top} | {100 * exact_share:.2f}% | "
                f"{100 * unrecognized:.2f}% | {100 * low:.2f}% | {100 * high:.2f}% | "
                f"{100 * median:.1f}% | {100 * high_percentile:.1f}% |"
            )


def speed_table(images_per_pass: int, repeats: int, load_before: float) -> None:
    """Print the rates of count_dots and read_dots at 64x64 and 32x32, float32 and uint8."""
    print(
        "| image size | count_dots, float32 | count_dots, uint8 | read_dots, float32 "
        "| read_dots, uint8 |"
    )
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(7)
    rates = {}
    for size in (64, 32):
        counts = rng.integers(1, MAX_COUNT + 1, images_per_pass)
        images = render_counts(
            counts, image_size=size, dot_radius=DEFAULT_RADIUS, noise=0.03, rng=rng
        )
        as_float = images_per_second(images, repeats)
        as_uint8 = images_per_second(to_uint8(images), repeats)
        sizes_float = images_per_second(images, repeats, read_dots)
        sizes_uint8 = images_per_second(to_uint8(images), repeats, read_dots)
        rates[size] = (as_float, as_uint8)
        print(
            f"| {size}x{size} | {as_float:,.0f} images/s | {as_uint8:,.0f} images/s "
            f"| {sizes_float:,.0f} images/s | {sizes_uint8:,.0f} images/s |"
        )
    as_float, as_uint8 = rates[64]
    print(
        f"\ncount_dots at 64x64 against the target of {TARGET_RATE:,} images/s: "
        f"{as_float / TARGET_RATE:.2f} (float32), {as_uint8 / TARGET_RATE:.2f} (uint8); "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )


def main() -> None:
    arguments = parse_arguments(__doc__.splitlines()[0])
    load_before = print_machine()
    if arguments.speed_images > 0:
        speed_table(arguments.speed_images, arguments.repeats, load_before)
    if arguments.images > 0:
        accuracy_tables(arguments.images)
        mode_table(arguments.images)


if __name__ == "__main__":
    main()
