"""Choosing the torch device and CPU thread count before a run starts.

A worker trains one run at a time on one device. On a machine with several
GPUs, start one worker per GPU and pin each with `CUDA_VISIBLE_DEVICES=<index>`:
torch then sees that GPU alone, as `cuda:0`, and `select_device` returns it.
A worker that sees more than one GPU still trains on the first one only and
logs a warning, so the other GPUs stay idle.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from typing import Literal

import torch

logger = logging.getLogger(__name__)

DevicePreference = Literal["auto", "cpu", "cuda"]


def select_device(preference: DevicePreference) -> torch.device:
    """Return the device to train on: CUDA for "auto" when a GPU is visible, else the CPU.

    Raises RuntimeError for "cuda" without a usable GPU, so a misconfigured
    worker fails at start-up instead of silently training on the CPU.
    """
    match preference:
        case "cpu":
            return torch.device("cpu")
        case "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(
                    "device 'cuda' was requested but torch sees no CUDA GPU "
                    f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                    "install a CUDA build of torch or set BIASLAB_DEVICE=cpu or auto"
                )
            return _first_visible_gpu()
        case "auto":
            return _first_visible_gpu() if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """Name the device for people: "cpu", or "cuda:0 (NVIDIA H200, CUDA_VISIBLE_DEVICES=1)"."""
    if device.type != "cuda":
        return str(device)
    details = torch.cuda.get_device_name(device)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        details += f", CUDA_VISIBLE_DEVICES={visible}"
    return f"{device} ({details})"


def _first_visible_gpu() -> torch.device:
    # TODO: this path has not run on a GPU yet.
    device = torch.device("cuda", 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    logger.info(
        "training on %s (%s), CUDA_VISIBLE_DEVICES=%s",
        device,
        torch.cuda.get_device_name(device),
        visible,
    )
    if torch.cuda.device_count() > 1:
        logger.warning(
            "%d GPUs are visible (CUDA_VISIBLE_DEVICES=%s) but a worker trains on %s only; "
            "start one worker per GPU with CUDA_VISIBLE_DEVICES set to its index",
            torch.cuda.device_count(),
            visible,
            device,
        )
    return device


def set_torch_threads(n: int | None) -> None:
    """Set torch's intra-op CPU thread count, or keep torch's default when `n` is None.

    Several workers on one machine should split the cores between them, or
    their thread pools compete for the same cores and slow each other down.
    """
    if n is None:
        logger.info("torch uses its default of %d CPU threads", torch.get_num_threads())
        return
    if n < 1:
        raise ValueError(f"torch thread count {n} is invalid; use 1 or more, or None")
    torch.set_num_threads(n)
    logger.info("torch set to %d CPU threads", n)


# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Freed blocks up to this size stay in the process for reuse.
_KEEP_FREED_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed blocks of up to 1 GiB for reuse instead of unmapping them.

    By default glibc serves blocks above a threshold (128 KiB at first, raised
    as such blocks are freed) with mmap and unmaps them on free, and it returns
    free memory at the top of the heap to the system. So every training step on
    the CPU page-faults its activations into fresh zeroed pages. Keeping them
    raised the 32x32 VAE (batch 64, z 32) from about 1,500-1,800 to about
    2,150-2,280 images/s on 2 shared CPU cores, measured with
    benchmarks/bench_training.py. The cost is memory that the process keeps
    after its peak. Call it once per process, before training. Returns False,
    and changes nothing, where the C library is not glibc.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        logger.info("malloc left at its defaults: the C library is not glibc")
        return False
    libc = ctypes.CDLL("libc.so.6")
    # mallopt returns 1 on success and 0 when glibc rejects the value.
    applied = libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_FREED_BYTES) == 1
    applied = libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES) == 1 and applied
    if applied:
        logger.info("malloc keeps freed blocks up to %d bytes for reuse", _KEEP_FREED_BYTES)
    else:
        logger.warning("glibc rejected the malloc thresholds, so CPU training may run slower")
    return applied
