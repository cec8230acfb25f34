"""Training throughput of every model kind and architecture, and `train()` against a bare loop.

Three tables, all on fresh renders of 32x32 (or 64x64) images of 2 or 4 dots:

1. Throughput: training images/s of each model kind x architecture, from a
   bare loop that renders a batch and calls the model's `training_step`.
2. Loop overhead: for each kind (with the `--ratio-architecture`), `train()`
   against that bare loop, taking turns `--repeats` times. Both loops build
   the model with `build_model` and render with the same `TrainingSet`, so the
   ratio is the cost of what `train()` adds around `training_step`: callbacks,
   loss averaging, divergence checks, stop checks.
3. Snapshot cost: seconds to draw `--snapshot-samples` samples with the
   loop's `sample_images`, and to probe them, apart from the training steps.

Each measurement skips `--warmup` steps and times every later step on its own.
The rates are the batch size over the median step time: on a shared machine
other processes stall some steps, and the median ignores those. The ratio
table also prints the rate over whole repeats (best repeat).

Model kinds whose modules do not exist yet (`build_model` raises ValueError)
are listed as skipped. The script first calls `keep_freed_memory()`, as a CPU
worker does; `--default-malloc` leaves glibc malloc as it is.

    python benchmarks/bench_training.py [--image-size 32] [--threads N] [--kinds vae wgan_gp]
        [--architectures conv] [--steps 40] [--ratio-steps 120] [--repeats 4]
        [--tables throughput ratio snapshot]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import ARCHITECTURES, MODEL_KINDS, RunSpec
from biaslab.families.training_set import TrainingSet
from biaslab.models.base import GenerativeModel, build_model
from biaslab.training.callbacks import SnapshotData
from biaslab.training.device import keep_freed_memory, select_device, set_torch_threads
from biaslab.training.loop import METRICS_PER_RUN, sample_images, train


def make_spec(kind: str, architecture: str, args: argparse.Namespace, steps: int) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2, 4], "image_size": args.image_size},
            "model": {"kind": kind, "architecture": architecture},
            "training": {
                "steps": steps,
                "batch_size": args.batch_size,
                "learning_rate": 1e-4,
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


def time_bare(
    spec: RunSpec, warmup: int, device: torch.device
) -> tuple[np.ndarray, GenerativeModel]:
    """Return the seconds of each step after `warmup` of a plain loop, and the trained model."""
    config = spec.training
    torch.manual_seed(config.seed)
    data = TrainingSet(spec.dataset, config.seed)
    model = build_model(spec, device)
    model.train()

    times = []
    for step in range(1, config.steps + 1):
        batch = data.batch(config.batch_size)
        images = torch.from_numpy(batch.images).to(device).permute(0, 3, 1, 2).contiguous()
        model.training_step(images)
        if step >= warmup:
            sync(device)
            times.append(time.perf_counter())
    return np.diff(times), model


def buildable(kind: str, args: argparse.Namespace, device: torch.device) -> bool:
    try:
        build_model(make_spec(kind, "conv", args, 10), device)
    except ValueError as error:
        print(f"{kind}: skipped ({error})")
        return False
    return True


def throughput_table(kinds: list[str], args: argparse.Namespace, device: torch.device) -> None:
    print(f"\ntraining images/s, median of {args.steps - args.warmup} timed steps")
    print(f"  {'kind':<10}" + "".join(f"{name:>12}" for name in args.architectures))
    for kind in kinds:
        rates = []
        for architecture in args.architectures:
            spec = make_spec(kind, architecture, args, args.steps)
            steps, _ = time_bare(spec, args.warmup, device)
            rates.append(args.batch_size / np.median(steps))
        print(f"  {kind:<10}" + "".join(f"{rate:12.0f}" for rate in rates))


def ratio_table(kinds: list[str], args: argparse.Namespace, device: torch.device) -> None:
    print(
        f"\ntrain() against the bare loop, {args.ratio_architecture}, {args.repeats} repeats "
        f"of {args.ratio_steps - args.warmup} timed steps"
    )
    print(
        f"  {'kind':<10}{'train()':>10}{'bare':>10}{'ratio':>8}"
        f"{'train() best':>14}{'bare best':>11}{'ratio':>8}"
    )
    for kind in kinds:
        spec = make_spec(kind, args.ratio_architecture, args, args.ratio_steps)
        loop_steps: list[np.ndarray] = []
        bare_steps: list[np.ndarray] = []
        for repeat in range(args.repeats):
            # Swap the order every repeat, so neither loop always runs on a warmer machine.
            if repeat % 2 == 0:
                loop_steps.append(time_train(spec, args.warmup, device))
                bare_steps.append(time_bare(spec, args.warmup, device)[0])
            else:
                bare_steps.append(time_bare(spec, args.warmup, device)[0])
                loop_steps.append(time_train(spec, args.warmup, device))
        batch_size = args.batch_size
        loop_median = batch_size / np.median(np.concatenate(loop_steps))
        bare_median = batch_size / np.median(np.concatenate(bare_steps))
        loop_best = max(batch_size * steps.size / steps.sum() for steps in loop_steps)
        bare_best = max(batch_size * steps.size / steps.sum() for steps in bare_steps)
        print(
            f"  {kind:<10}{loop_median:10.0f}{bare_median:10.0f}{loop_median / bare_median:8.3f}"
            f"{loop_best:14.0f}{bare_best:11.0f}{loop_best / bare_best:8.3f}"
        )


def snapshot_table(kinds: list[str], args: argparse.Namespace, device: torch.device) -> None:
    count = args.snapshot_samples
    print(f"\nsnapshot cost, {count} samples, {args.ratio_architecture}, after a few steps")
    print(f"  {'kind':<10}{'sampling s':>12}{'probe s':>10}{'as training steps':>20}")
    for kind in kinds:
        spec = make_spec(kind, args.ratio_architecture, args, args.warmup + 5)
        steps, model = time_bare(spec, args.warmup, device)
        data = TrainingSet(spec.dataset, 0)
        generator = torch.Generator(device=device).manual_seed(1)

        started = time.perf_counter()
        images = sample_images(model, count, generator)
        sampled = time.perf_counter()
        data.family.probe(images, spec.dataset)
        probed = time.perf_counter()

        sampling = sampled - started
        equivalent = (probed - started) / np.median(steps)
        print(f"  {kind:<10}{sampling:12.2f}{probed - sampled:10.2f}{equivalent:20.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, choices=[32, 64], default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kinds", nargs="+", choices=MODEL_KINDS, default=list(MODEL_KINDS))
    parser.add_argument(
        "--architectures", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES)
    )
    parser.add_argument("--ratio-architecture", choices=ARCHITECTURES, default="conv")
    parser.add_argument("--steps", type=int, default=40, help="steps per throughput measurement")
    parser.add_argument("--ratio-steps", type=int, default=120, help="steps per ratio measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start")
    parser.add_argument("--repeats", type=int, default=4, help="measurements of each loop")
    parser.add_argument("--snapshot-samples", type=int, default=1000)
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=["throughput", "ratio", "snapshot"],
        default=["throughput", "ratio", "snapshot"],
        help="which tables to measure and print",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads; torch's default when unset")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc malloc at its defaults instead of calling keep_freed_memory()",
    )
    args = parser.parse_args()
    for name in ("steps", "ratio_steps"):
        if not 0 < args.warmup < getattr(args, name) - 1:
            parser.error(f"--warmup {args.warmup} must lie between 1 and --{name} - 2")

    device = select_device(args.device)
    set_torch_threads(args.threads)
    malloc_tuned = not args.default_malloc and keep_freed_memory()
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{'malloc keeps freed memory' if malloc_tuned else 'default malloc'}, "
        f"{args.image_size}x{args.image_size}, batch {args.batch_size}, each model's default z"
    )
    kinds = [kind for kind in args.kinds if buildable(kind, args, device)]
    if "throughput" in args.tables:
        throughput_table(kinds, args, device)
    if "ratio" in args.tables:
        ratio_table(kinds, args, device)
    if "snapshot" in args.tables:
        snapshot_table(kinds, args, device)


if __name__ == "__main__":
    main()
