"""Run the example study once and print its wall time and final count histogram.

The example: a conv VAE (z 32, beta 1, Adam 1e-3, batch 64, 3000 steps) trained
on 32x32 images of 2 or 4 dots with pixel noise 0.03, snapshots of 1000 samples
every 250 steps, seed 0.

    python benchmarks/example_study.py [--steps 3000] [--grid final.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import RunSpec
from biaslab.training.callbacks import SnapshotData
from biaslab.training.device import keep_freed_memory, select_device
from biaslab.training.loop import train


def example_spec(steps: int) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2, 4], "noise": 0.03, "image_size": 32},
            "model": {"kind": "vae", "architecture": "conv", "z_dim": 32, "beta": 1.0},
            "training": {
                "steps": steps,
                "batch_size": 64,
                "learning_rate": 1e-3,
                "snapshot_every": min(250, steps),
                "samples_per_snapshot": 1000,
                "seed": 0,
            },
        }
    )


def describe(histogram: FeatureHistogram) -> str:
    """Format the non-empty count bins as shares of all samples, then the unrecognized share."""
    parts = []
    for left_edge, count in zip(histogram.edges, histogram.counts, strict=False):
        if count:
            parts.append(f"{left_edge + 0.5:.0f}: {count / histogram.total:.1%}")
    parts.append(f"unrecognized: {histogram.unrecognized_share:.1%}")
    return ", ".join(parts)


class PrintingCallbacks:
    """Prints each snapshot as it arrives and keeps the last one."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last: SnapshotData | None = None

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        print(f"device {device}; training counts {describe(training_histograms['count'])}")

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        pass

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        self.last = snapshot
        elapsed = time.perf_counter() - self.started
        print(
            f"step {snapshot.step:5d} {elapsed:6.0f} s  loss {snapshot.losses['loss']:7.1f}"
            f"  kl {snapshot.losses['kl']:5.1f}  {describe(snapshot.histograms['count'])}"
        )

    def should_stop(self, step: int) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--grid", type=Path, help="write the final sample grid to this PNG file")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()

    spec = example_spec(args.steps)
    keep_freed_memory()
    started = time.perf_counter()
    callbacks = PrintingCallbacks(started)
    train(spec, callbacks, select_device(args.device))
    wall = time.perf_counter() - started

    if callbacks.last is None:
        raise RuntimeError(
            "train() returned without a snapshot, but it reports one at the last step"
        )
    final = callbacks.last.histograms["count"]
    print(f"wall time {wall:.0f} s for {args.steps} steps")
    print(f"final counts of {final.total} samples: {describe(final)}")
    recognized = final.total - final.unrecognized
    if recognized:
        shares = [
            f"{left_edge + 0.5:.0f}: {count / recognized:.1%}"
            for left_edge, count in zip(final.edges, final.counts, strict=False)
            if count
        ]
        print(f"among the {recognized} recognized: {', '.join(shares)}")
    if args.grid is not None:
        args.grid.write_bytes(callbacks.last.grid_png)
        print(f"final sample grid written to {args.grid}")


if __name__ == "__main__":
    main()
