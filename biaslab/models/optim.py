"""Adam with the run's learning-rate schedule: constant or cosine, after a linear warmup.

The schedule is a torch `LambdaLR` that advances once per training step. Its
state (the number of steps taken) is part of the model's `state_dict`, so a
resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from biaslab.design import Training

AdamBetas = tuple[float, float]
# torch's own defaults, which the VAE keeps.
TORCH_ADAM_BETAS: AdamBetas = (0.9, 0.999)


def learning_rate_factor(update: int, training: Training) -> float:
    """Return the factor on `training.learning_rate` for the update with 0-based index `update`.

    During the first `warmup_steps` updates the factor rises linearly, from
    1 / warmup_steps to 1. After the warmup it stays at 1 ("constant"), or it
    follows half a cosine from 1 towards 0 over the remaining steps ("cosine").
    """
    warmup = training.warmup_steps
    if update < warmup:
        return (update + 1) / warmup
    if training.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, training.steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class ScheduledAdam:
    """An Adam optimizer whose learning rate follows the run's schedule."""

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        training: Training,
        default_betas: AdamBetas = TORCH_ADAM_BETAS,
    ) -> None:
        betas = training.adam_betas if training.adam_betas is not None else default_betas
        self.optimizer = torch.optim.Adam(parameters, lr=training.learning_rate, betas=betas)

        def factor(update: int) -> float:
            return learning_rate_factor(update, training)

        # LambdaLR sets the learning rate for update 0 here, and for update k
        # after its k-th `step()`. A plain function (not a lambda object) keeps
        # its state_dict to numbers only, so checkpoints load with weights_only.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    def minimize(self, loss: torch.Tensor) -> None:
        """Take one Adam update down the gradient of `loss`, at the current learning rate."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def advance_schedule(self) -> None:
        """Move the learning rate on to the next training step's value."""
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict(), "schedule": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["adam"])
        self.scheduler.load_state_dict(state["schedule"])
