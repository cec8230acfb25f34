"""Checkpoints of a training run: enough state to resume it exactly where it stopped.

A checkpoint contains the model's weights and optimizer state, the last step
done, every random state that the steps and snapshots draw from, the partial
loss windows, and the run spec. Resuming from the checkpoint at step k on the
same device and thread count gives the same losses and snapshots as an
uninterrupted run.

Files are written with `torch.save` and read with `torch.load(weights_only=True)`,
so loading a checkpoint never runs pickled code. Random states are therefore
stored as tensors, ints, lists, tuples and dicts only.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biaslab.design import RunSpec
from biaslab.families.training_set import TrainingSet

logger = logging.getLogger(__name__)

# Increase when the layout of the saved dict changes, so that older files are rejected.
CHECKPOINT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file that cannot be read, or that belongs to another run spec."""


@dataclass(frozen=True)
class Checkpoint:
    """The state of a run after `step` steps, with everything done at that step included."""

    step: int
    # RunSpec.model_dump(mode="json") of the run that wrote it.
    spec: dict[str, Any]
    # GenerativeModel.state_dict(): weights and optimizer state.
    model: dict[str, Any]
    # The outputs of `capture_random_state`.
    random_state: dict[str, Any]
    # LossAverager.state_dict() of each loss window, by window name.
    loss_windows: dict[str, dict[str, Any]]

    def check_resumable(self, spec: RunSpec, device: torch.device) -> None:
        """Raise CheckpointError unless a run of `spec` on `device` can resume from this.

        A resume must repeat the uninterrupted run exactly, so the spec must be
        the same and so must the device type, whose random generators differ.
        """
        expected = spec.model_dump(mode="json")
        if self.spec != expected:
            raise CheckpointError(
                f"checkpoint at step {self.step} was written for another run spec "
                f"({self.spec}); expected {expected}"
            )
        written_on = torch.device(self.random_state["sample_generator_device"]).type
        if written_on != device.type:
            raise CheckpointError(
                f"checkpoint at step {self.step} was written on {written_on}, "
                f"not {device.type}; resume on the same device type"
            )


def capture_random_state(data: TrainingSet, sample_generator: torch.Generator) -> dict[str, Any]:
    """Return every random state a run draws from, in a form `torch.load` reads safely."""
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            **numpy_state,
            "state": {
                "key": numpy_state["state"]["key"].tolist(),
                "pos": numpy_state["state"]["pos"],
            },
        },
        "python": random.getstate(),
        "data": data.rng_state(),
        "sample_generator": sample_generator.get_state(),
        "sample_generator_device": str(sample_generator.device),
    }
    if sample_generator.device.type == "cuda":
        # NOTE: this CUDA path has not been run. On a GPU, `reparameterize` draws
        # from the CUDA generators, so their states are kept too.
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(
    state: dict[str, Any], data: TrainingSet, sample_generator: torch.Generator
) -> None:
    """Set every random state from a `capture_random_state` result."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    data.set_rng_state(state["data"])
    sample_generator.set_state(state["sample_generator"])
    if "torch_cuda" in state:
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": CHECKPOINT_VERSION,
        "step": checkpoint.step,
        "spec": checkpoint.spec,
        "model": checkpoint.model,
        "random_state": checkpoint.random_state,
        "loss_windows": checkpoint.loss_windows,
    }
    # A unique temporary name in the same folder, so os.replace is a rename on
    # one file system and two writers never share a partial file.
    descriptor, partial_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".partial", dir=path.parent
    )
    partial = Path(partial_name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(payload, file)
            file.flush()
            # Without fsync a crash right after the rename can leave an empty file.
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    logger.debug("checkpoint at step %d written to %s", checkpoint.step, path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read the checkpoint at `path`, with every tensor on the CPU.

    Raises FileNotFoundError when there is no file, and CheckpointError when
    the file cannot be read or has another layout version.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable: {error}") from error

    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        found = payload.get("version") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {path} has layout version {found!r}, expected {CHECKPOINT_VERSION}"
        )
    try:
        return Checkpoint(
            step=int(payload["step"]),
            spec=payload["spec"],
            model=payload["model"],
            random_state=payload["random_state"],
            loss_windows=payload["loss_windows"],
        )
    except KeyError as error:
        raise CheckpointError(f"checkpoint {path} has no {error.args[0]!r} entry") from error
