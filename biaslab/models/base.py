"""The training-step interface that every generative model implements.

The training loop never touches a model's losses, networks or optimizers. It
passes each batch to `training_step`, calls `sample` for images to probe, and
saves `state_dict` in checkpoints. A VAE, a WGAN-GP (several critic steps per
generator step), a PixelCNN or a DDPM each fit behind these few methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from biaslab.design import DdpmModel, PixelCnnModel, RunSpec, VaeModel, WganGpModel

# Loss terms of one step as detached 0-dim tensors on the model's device.
# Tensors, not floats: turning them into Python numbers forces a GPU sync, so
# the loop sums them on the device and converts only when it reports them.
LossTerms = dict[str, torch.Tensor]


class GenerativeModel(ABC):
    """A generative model with its own networks and optimizers, on one device."""

    device: torch.device
    image_size: int

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Put every network in training mode (or eval mode when `mode` is False)."""

    def eval(self) -> None:
        self.train(False)

    @abstractmethod
    def training_step(self, images: torch.Tensor) -> LossTerms:
        """Take one optimizer step on a batch.

        `images` is (B, 3, H, W) float on `self.device`, in [0, 1]. The result
        maps term names to detached 0-dim tensors, each a per-image mean over
        the batch. It always includes "loss", the objective that was minimized.
        """

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw `n` images as a (n, 3, H, W) float tensor in [0, 1] on `self.device`.

        Runs in eval mode without gradients and restores the previous mode.
        `generator`, when given, must live on `self.device`. It makes the draw
        independent of the global random state.
        """

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Return the weights and optimizer state: enough to resume training."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def build_model(spec: RunSpec, device: torch.device) -> GenerativeModel:
    """Build the model that `spec.model` describes, for `spec.dataset`'s image size.

    Raises ValueError for a design the model cannot train, naming the fields.
    """
    # Imported here because the model modules import this one for GenerativeModel.
    image_size = spec.dataset.image_size
    match spec.model:
        case VaeModel():
            from biaslab.models.vae import Vae

            return Vae(spec.model, image_size, spec.training, device)
        case WganGpModel():
            from biaslab.models.wgan_gp import WganGp

            return WganGp(spec.model, image_size, spec.training, device)
        case PixelCnnModel():
            from biaslab.models.pixelcnn import PixelCnn

            return PixelCnn(spec.model, image_size, spec.training, device)
        case DdpmModel():
            from biaslab.models.ddpm import Ddpm

            return Ddpm(spec.model, image_size, spec.training, device)
