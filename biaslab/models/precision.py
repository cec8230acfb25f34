"""How a model computes on its device: bf16 autocast and channels-last on CUDA, plain on the CPU.

On the CPU both stay off: the loop's benchmark found CPU convolutions slower
on channels-last tensors with torch 2.13, and CPU autocast to bf16 is slower
than float32 on CPUs without bf16 instructions.
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class ComputeMode:
    """The numeric format and memory layout a model uses on `device`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # TODO: this CUDA path has not run on a GPU yet; check speed and losses on one.
        cuda = device.type == "cuda"
        # bf16 needs no loss scaling, unlike float16, but needs an Ampere or newer GPU.
        self.autocast_enabled = cuda and torch.cuda.is_bf16_supported()
        self.channels_last = cuda

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Return a context in which eligible operations run in bf16, when enabled."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_enabled)

    def prepare_module(self, module: ModuleT) -> ModuleT:
        """Move `module` to the device in place, with 4-D weights channels-last when enabled."""
        module.to(self.device)
        if self.channels_last:
            # torch's type stubs omit memory_format, which Module.to accepts.
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Return (B, 3, H, W) images in the memory layout the networks expect."""
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images
