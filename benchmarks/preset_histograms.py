"""Train a model preset on 32x32 images of 2 or 4 dots and print the generated count histogram.

The dataset is the example study's: counts {2, 4} with equal weights, pixel
noise 0.03, dot radius 0.08 of the width. Every snapshot prints its count
histogram and unrecognized share; the end prints the final histogram, the
histogram among recognized samples, the wall time and the CPU time of the process,
and the load average at the end.

    python benchmarks/preset_histograms.py vae [--preset quick] [--threads 2]
        [--model '{"z_dim": 16}'] [--training '{"steps": 1000}'] [--grid samples.png]

`--model` and `--training` take JSON objects of fields that replace the
preset's, so a variant of a preset can be tried without editing it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import DotsDataset, RunSpec
from biaslab.presets import PRESET_NAMES, PRESETS, get_preset
from biaslab.training.callbacks import SnapshotData
from biaslab.training.device import keep_freed_memory, select_device, set_torch_threads
from biaslab.training.loop import train


def describe(histogram: FeatureHistogram) -> str:
    """Format the non-empty count bins as shares of all samples, then the unrecognized share."""
    parts = [
        f"{label}: {count / histogram.total:.1%}"
        for label, count in zip(histogram.labels, histogram.counts, strict=True)
        if count
    ]
    parts.append(f"unrecognized: {histogram.unrecognized_share:.1%}")
    return ", ".join(parts)


def describe_recognized(histogram: FeatureHistogram) -> str:
    recognized = histogram.total - histogram.unrecognized
    if not recognized:
        return "none recognized"
    return ", ".join(
        f"{label}: {count / recognized:.1%}"
        for label, count in zip(histogram.labels, histogram.counts, strict=True)
        if count
    )


class PrintingCallbacks:
    """Prints each snapshot and writes its sample grid to `grid`, if given; keeps the last one."""

    def __init__(self, started: float, grid: Path | None) -> None:
        self.started = started
        self.grid = grid
        self.last: SnapshotData | None = None

    def on_start(self, training_histograms: dict[str, FeatureHistogram], device: str) -> None:
        print(f"device {device}; training counts {describe(training_histograms['count'])}")

    def on_metrics(self, step: int, losses: dict[str, float]) -> None:
        pass

    def on_snapshot(self, snapshot: SnapshotData) -> None:
        self.last = snapshot
        elapsed = time.perf_counter() - self.started
        losses = "  ".join(f"{name} {value:.2f}" for name, value in snapshot.losses.items())
        print(f"step {snapshot.step:6d} {elapsed:6.0f} s  {losses}")
        print(f"    {describe(snapshot.histograms['count'])}")
        if self.grid is not None:
            self.grid.write_bytes(snapshot.grid_png)

    def should_stop(self, step: int) -> bool:
        return False


def preset_spec(kind: str, name: str, model_changes: dict, training_changes: dict) -> RunSpec:
    preset = get_preset(kind, name)
    dataset = DotsDataset(counts=[2, 4], noise=0.03, image_size=32)
    spec = preset.run_spec(dataset).model_dump()
    spec["model"].update(model_changes)
    spec["training"].update(training_changes)
    return RunSpec.model_validate(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=sorted(PRESETS), help="model kind")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="quick")
    parser.add_argument("--model", default="{}", help="JSON object of model fields to replace")
    parser.add_argument(
        "--training", default="{}", help="JSON object of training fields to replace"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads; torch's default when unset")
    parser.add_argument(
        "--grid",
        type=Path,
        help="PNG file that each snapshot's sample grid overwrites, so the last one stays",
    )
    args = parser.parse_args()

    spec = preset_spec(args.kind, args.preset, json.loads(args.model), json.loads(args.training))
    set_torch_threads(args.threads)
    keep_freed_memory()
    print(f"model {spec.model.model_dump()}")
    print(f"training {spec.training.model_dump()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    started = time.perf_counter()
    cpu_started = time.process_time()
    callbacks = PrintingCallbacks(started, args.grid)
    train(spec, callbacks, select_device(args.device))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    if callbacks.last is None:
        raise RuntimeError("train() returned without a snapshot, but it takes one at the last step")
    final = callbacks.last.histograms["count"]
    # On a busy machine the wall time exceeds the CPU time by the waits for a core.
    print(f"wall time {wall:.0f} s, CPU time {cpu:.0f} s for {spec.training.steps} steps")
    # Other processes on the same cores slow a run down, so the load average goes with the times.
    print("load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    print(f"final counts of {final.total} samples: {describe(final)}")
    print(f"among the recognized: {describe_recognized(final)}")
    if args.grid is not None:
        print(f"final sample grid written to {args.grid}")


if __name__ == "__main__":
    main()
