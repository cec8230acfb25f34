"""Training-loop overhead: images/s through `train()` against a bare PyTorch loop.

Both loops train the same network with the same optimizer, loss, batch size and
data source (freshly rendered dots images every step), so the ratio is the cost
of what `train()` adds: callbacks, loss averaging, stop checks. Each measurement
skips `--warmup` steps and times every later step on its own; the final
snapshot falls outside the timed steps. The two loops take turns `--repeats`
times.

The headline rate is the batch size over the median step time of all repeats:
on a shared machine other processes stall some steps, and the median ignores
those. The rate over whole repeats (best repeat) is printed beside it.

The script first calls `keep_freed_memory()`, as a CPU worker should.
`--default-malloc` leaves glibc malloc as it is. It then unmaps freed
activations, and the loops free tensors at different points of a step, so
the ratio moves by several percent for reasons that are not loop overhead.

    python benchmarks/bench_training.py [--image-size 32] [--steps 160] [--repeats 6] [--threads N]
        [--default-malloc]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.datasets.dots import DotsTrainingSet
from biaslab.design import RunSpec
from biaslab.models.vae import VaeNetwork, vae_loss
from biaslab.training.callbacks import SnapshotData
from biaslab.training.device import keep_freed_memory, select_device, set_torch_threads
from biaslab.training.loop import METRICS_PER_RUN, train


def make_spec(image_size: int, batch_size: int, z_dim: int, steps: int) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2, 4], "image_size": image_size},
            "model": {"kind": "vae", "z_dim": z_dim, "beta": 1.0},
            "training": {
                "steps": steps,
                "batch_size": batch_size,
                "learning_rate": 1e-3,
                "snapshot_every": steps,
                "samples_per_snapshot": 64,
                "seed": 0,
            },
        }
    )


class TimingCallbacks:
    """Records when each metrics report arrives and does nothing else."""

    def __init__(self) -> None:
        self.report_times: dict[int, float] = {}

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        pass

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        self.report_times[step] = time.perf_counter()

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        pass

    def should_stop(self, step: int) -> bool:
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train(spec: RunSpec, warmup: int, device: torch.device) -> np.ndarray:
    """Return the seconds of each `train()` step after `warmup`, from its metrics reports."""
    steps = spec.training.steps
    if steps >= 2 * METRICS_PER_RUN:
        raise ValueError(f"steps {steps} thins out metric reports: use fewer than 400")
    callbacks = TimingCallbacks()
    train(spec, callbacks, device)
    # Every step reports its losses, and reading them waits for the device,
    # so consecutive reports bracket one finished step.
    times = [callbacks.report_times[step] for step in range(warmup, steps + 1)]
    return np.diff(times)


def time_bare(spec: RunSpec, warmup: int, device: torch.device) -> np.ndarray:
    """Return the seconds of each step after `warmup` of a plain loop on the same model and data."""
    config = spec.training
    torch.manual_seed(config.seed)
    data = DotsTrainingSet(spec.dataset, config.seed)
    network = VaeNetwork(spec.dataset.image_size, spec.model.z_dim).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    network.train()

    times = []
    for step in range(1, config.steps + 1):
        batch = data.batch(config.batch_size)
        images = torch.from_numpy(batch.images).to(device).permute(0, 3, 1, 2).contiguous()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, mean, logvar = network(images)
        loss, _, _ = vae_loss(logits, images, mean, logvar, spec.model.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            sync(device)
            times.append(time.perf_counter())
    return np.diff(times)


def compare(label: str, spec: RunSpec, args: argparse.Namespace, device: torch.device) -> None:
    loop_steps: list[np.ndarray] = []
    bare_steps: list[np.ndarray] = []
    for repeat in range(args.repeats):
        # Swap the order every repeat, so neither loop always runs on a warmer machine.
        if repeat % 2 == 0:
            loop_steps.append(time_train(spec, args.warmup, device))
            bare_steps.append(time_bare(spec, args.warmup, device))
        else:
            bare_steps.append(time_bare(spec, args.warmup, device))
            loop_steps.append(time_train(spec, args.warmup, device))

    batch_size = spec.training.batch_size
    loop_median = batch_size / np.median(np.concatenate(loop_steps))
    bare_median = batch_size / np.median(np.concatenate(bare_steps))
    loop_best = max(batch_size * steps.size / steps.sum() for steps in loop_steps)
    bare_best = max(batch_size * steps.size / steps.sum() for steps in bare_steps)
    print(f"{label}, {args.repeats} repeats of {args.steps - args.warmup} timed steps:")
    print(f"  {'':<32}{'train()':>10}{'bare loop':>12}{'ratio':>8}")
    print(
        f"  {'images/s at the median step':<32}{loop_median:10.0f}{bare_median:12.0f}"
        f"{loop_median / bare_median:8.3f}"
    )
    print(
        f"  {'images/s over the best repeat':<32}{loop_best:10.0f}{bare_best:12.0f}"
        f"{loop_best / bare_best:8.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, choices=[32, 64], default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=160, help="training steps per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start")
    parser.add_argument("--repeats", type=int, default=6, help="measurements of each loop")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads; torch's default when unset")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc malloc at its defaults instead of calling keep_freed_memory()",
    )
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        parser.error(f"--warmup {args.warmup} must lie between 1 and --steps - 1")

    device = select_device(args.device)
    set_torch_threads(args.threads)
    malloc_tuned = not args.default_malloc and keep_freed_memory()
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{'malloc keeps freed memory' if malloc_tuned else 'default malloc'}"
    )
    spec = make_spec(args.image_size, args.batch_size, args.z_dim, args.steps)
    label = f"{args.image_size}x{args.image_size}, batch {args.batch_size}, z {args.z_dim}"
    compare(label, spec, args, device)


if __name__ == "__main__":
    main()
