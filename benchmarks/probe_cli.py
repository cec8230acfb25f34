"""Command line of the probe benchmarks: the shared arguments and the machine line."""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np


def parse_arguments(description: str) -> argparse.Namespace:
    """Parse --images, --speed-images and --repeats, the options of every probe benchmark."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--images", type=int, default=10_000, help="renders per accuracy row; 0 skips the tables"
    )
    parser.add_argument(
        "--speed-images", type=int, default=8192, help="images per speed pass; 0 skips speed"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="number of speed passes; the fastest is reported"
    )
    return parser.parse_args()


def print_machine() -> float:
    """Print the processor, CPU count, numpy version and load average, and return the load."""
    load = os.getloadavg()[0]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, load average {load:.2f}\n"
    )
    return load
