"""The pie probe: speed, and accuracy against the renderer's true features.

Run: python benchmarks/bench_probe_pie.py [--images 10000] [--speed-images 8192]

Speed: read_pies on 64x64 and 32x32 renders of 2-4 colours with noise 0.03, float and uint8
input, the best of several passes, with the CPU time per image beside the wall-clock rate.
The dot counter's rate in the same run is printed as a reference for the machine's load.
Accuracy: fresh renders (values 1-9 at random, random start angle) for each image size,
noise and colour count. Each row gives the shares of images whose size and position are
within one bin (0.05 of the half width), whose red share is within 0.05 and whose colour
count is exact, and the shares unrecognized. Unrecognized images count as misses.
Gaussian-blurred renders show what becomes of blurry samples.
"""

from __future__ import annotations

import os
import time

import numpy as np
from probe_cli import parse_arguments, print_machine
from scipy import ndimage

from biaslab.datasets.dots import render_counts
from biaslab.datasets.pie import quantity_of_value, render_pies
from biaslab.design.pie import OFFSET_RANGE, RED_SHARE_RANGE, SIZE_RANGE
from biaslab.images import to_uint8
from biaslab.probes.count import count_dots
from biaslab.probes.pie import read_pies

BIN_WIDTH = 0.05
RED_TOLERANCE = 0.05
# Images per second that the probe is to reach at 64x64 on 2 cores.
TARGET_RATE = 20_000


def render(values: np.ndarray, size: int, colours: int, noise: float, rng) -> np.ndarray:
    return render_pies(
        values, image_size=size, colours=colours, noise=noise, random_rotation=True, rng=rng
    )


def speed(images: np.ndarray, repeats: int) -> tuple[float, float]:
    """Return the best wall-clock rate in images/s and the CPU microseconds per image."""
    read_pies(images[:64])  # warm up
    best, cpu = 0.0, float("inf")
    for _ in range(repeats):
        wall, processor = time.perf_counter(), time.process_time()
        read_pies(images)
        best = max(best, images.shape[0] / (time.perf_counter() - wall))
        cpu = min(cpu, (time.process_time() - processor) / images.shape[0] * 1e6)
    return best, cpu


def count_probe_speed(n: int, repeats: int) -> tuple[float, float]:
    """Time the dot counter on the same machine and load, as a reference for read_pies."""
    rng = np.random.default_rng(8)
    counts = rng.integers(1, 13, n)
    images = render_counts(counts, image_size=64, dot_radius=0.08, noise=0.03, rng=rng)
    count_dots(images[:64], 0.08)  # warm up
    best, cpu = 0.0, float("inf")
    for _ in range(repeats):
        wall, processor = time.perf_counter(), time.process_time()
        count_dots(images, 0.08)
        best = max(best, n / (time.perf_counter() - wall))
        cpu = min(cpu, (time.process_time() - processor) / n * 1e6)
    return best, cpu


def shares(images: np.ndarray, values: np.ndarray, colours: int) -> list[float]:
    """Return the shares: size, position, red share and colour count right, unrecognized."""
    reading = read_pies(images)
    size_error = np.abs(reading.size - quantity_of_value(values[:, 0], SIZE_RANGE))
    x_error = np.abs(reading.x - quantity_of_value(values[:, 1], OFFSET_RANGE))
    y_error = np.abs(reading.y - quantity_of_value(values[:, 2], OFFSET_RANGE))
    true_red = quantity_of_value(values[:, 3], RED_SHARE_RANGE) if colours > 1 else 0.0
    red_error = np.abs(reading.red_share - true_red)
    return [
        float((size_error <= BIN_WIDTH).mean()),
        float(((x_error <= BIN_WIDTH) & (y_error <= BIN_WIDTH)).mean()),
        float((red_error <= RED_TOLERANCE).mean()),
        float((reading.colours == colours).mean()),
        float(np.isnan(reading.size).mean()),
        float(np.isnan(reading.red_share).mean()),
    ]


def print_row(label: str, row: list[float]) -> None:
    print(f"| {label} | " + " | ".join(f"{100 * share:.2f}%" for share in row) + " |")


HEADER = (
    "| size within 1 bin | position within 1 bin | red share within 0.05 | colours exact "
    "| shape unrecognized | colours unrecognized |"
)


def accuracy_tables(n: int) -> None:
    rng = np.random.default_rng(2024)
    print(f"\nAccuracy, {n:,} renders per row, values 1-9 uniform, random start angle\n")
    print(f"| image size, noise, colours {HEADER}")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in (32, 64):
        for noise in (0.0, 0.03, 0.05, 0.1):
            for colours in (1, 2, 3, 4):
                values = rng.integers(1, 10, size=(n, 4))
                images = render(values, size, colours, noise, rng)
                print_row(f"{size}x{size}, {noise}, {colours}", shares(images, values, colours))

    print(f"\nGaussian-blurred renders (noise 0.03, 3 colours), {n // 2:,} per row\n")
    print(f"| image size, blur sigma in pixels {HEADER}")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in (32, 64):
        for sigma in (0.5, 1.0, 1.5, 2.0, 3.0):
            scaled = sigma * size / 32
            values = rng.integers(1, 10, size=(n // 2, 4))
            images = render(values, size, 3, 0.03, rng)
            blurred = ndimage.gaussian_filter(images, sigma=(0, scaled, scaled, 0))
            print_row(f"{size}x{size}, {scaled:g}", shares(blurred, values, 3))


def speed_table(images_per_pass: int, repeats: int, load_before: float) -> None:
    """Print read_pies's rates at 64x64 and 32x32 beside count_dots's in the same run."""
    print("| image size | read_pies, float32 | read_pies, uint8 |")
    print("| --- | --- | --- |")
    rng = np.random.default_rng(7)
    rates = {}
    for size in (64, 32):
        values = rng.integers(1, 10, size=(images_per_pass, 4))
        colours = np.resize(np.arange(2, 5), images_per_pass)
        images = np.concatenate(
            [render(values[colours == k], size, k, 0.03, rng) for k in (2, 3, 4)]
        )
        as_float, float_cpu = speed(images, repeats)
        as_uint8, uint8_cpu = speed(to_uint8(images), repeats)
        rates[size] = (as_float, as_uint8)
        print(
            f"| {size}x{size} | {as_float:,.0f} images/s ({float_cpu:.1f} us CPU each) | "
            f"{as_uint8:,.0f} images/s ({uint8_cpu:.1f} us CPU each) |"
        )
    reference, reference_cpu = count_probe_speed(images_per_pass, repeats)
    as_float, as_uint8 = rates[64]
    print(
        f"\ncount_dots on 64x64 renders of 1-12 dots, same run: {reference:,.0f} images/s "
        f"({reference_cpu:.1f} us CPU each); read_pies at 64x64 runs {as_float / reference:.2f}"
        f" (float32) and {as_uint8 / reference:.2f} (uint8) times its rate"
    )
    print(
        f"read_pies at 64x64 against the target of {TARGET_RATE:,} images/s: "
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


if __name__ == "__main__":
    main()
