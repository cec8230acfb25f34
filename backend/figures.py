"""Plotly figures built server-side, so the browser only calls `Plotly.react`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from biaslab.analysis.histogram import FeatureHistogram

TRAINING_COLOUR = "#4c72b0"
GENERATED_COLOUR = "#dd8452"
UNRECOGNIZED_LABEL = "unrecognized"
# Features with more bins than this (dot counts have 32) show only the bins up to
# the last one in use, and at least MIN_TRIMMED_AXIS of them, so that early sparse
# histograms keep a scale. Features with fewer bins always show all of them.
MAX_UNTRIMMED_BINS = 16
MIN_TRIMMED_AXIS = 8


def _figure_json(figure: go.Figure) -> dict[str, Any]:
    # plotly's own encoder turns numpy values into plain JSON.
    result: dict[str, Any] = json.loads(figure.to_json())
    return result


def bin_labels(histogram: FeatureHistogram) -> list[str]:
    """Return the label of each bin; histograms stored without labels get their bin centres."""
    if histogram.labels:
        return list(histogram.labels)
    edges = histogram.edges
    return [f"{(low + high) / 2:g}" for low, high in zip(edges[:-1], edges[1:], strict=False)]


def _shares(histogram: FeatureHistogram, upto: int) -> list[float]:
    total = histogram.total or 1
    return [count / total for count in histogram.counts[:upto]]


def _last_used_bin(histogram: FeatureHistogram | None) -> int:
    """Return the 1-based position of the last bin with a count, 0 when none has one."""
    if histogram is None:
        return 0
    used = [index + 1 for index, count in enumerate(histogram.counts) if count]
    return max(used, default=0)


def _bins_to_show(training: FeatureHistogram | None, generated: FeatureHistogram | None) -> int:
    bins = max((len(h.counts) for h in (training, generated) if h is not None), default=0)
    if bins <= MAX_UNTRIMMED_BINS:
        return bins
    # Two empty bins past the training values show where generation may spread.
    needed = max(MIN_TRIMMED_AXIS, _last_used_bin(training) + 2, _last_used_bin(generated))
    return min(bins, needed)


def feature_figure(
    title: str,
    training: FeatureHistogram | None,
    generated: FeatureHistogram | None,
    step: int | None,
) -> dict[str, Any]:
    """Bars of the share of images in each bin of one feature, training beside generated.

    Shares are of all images, so the generated bars and the "unrecognized" bar
    add up to 1: samples the probe could not read are shown, never dropped.
    """
    upto = _bins_to_show(training, generated)
    figure = go.Figure()
    if training is not None:
        figure.add_bar(
            name="training",
            x=[*bin_labels(training)[:upto], UNRECOGNIZED_LABEL],
            y=[*_shares(training, upto), training.unrecognized_share],
            marker_color=TRAINING_COLOUR,
        )
    if generated is not None:
        figure.add_bar(
            name=f"generated (step {step})",
            x=[*bin_labels(generated)[:upto], UNRECOGNIZED_LABEL],
            y=[*_shares(generated, upto), generated.unrecognized_share],
            marker_color=GENERATED_COLOUR,
        )
    heading = title
    if generated is not None:
        share = generated.unrecognized_share
        heading += f": {share:.0%} of {generated.total} samples unrecognized"
    figure.update_layout(
        template="simple_white",
        title=heading,
        barmode="group",
        xaxis={"title": title, "type": "category"},
        yaxis={"title": "share of images", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return _figure_json(figure)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity; a non-finite loss is sent as null."""
    return value if math.isfinite(value) else None


def loss_figure(
    steps: Sequence[int], series: Mapping[str, Sequence[float | None]]
) -> dict[str, Any]:
    """Lines of each loss term against the training step."""
    figure = go.Figure()
    for name, values in series.items():
        figure.add_scatter(name=name, x=list(steps), y=list(values), mode="lines")
    figure.update_layout(
        template="simple_white",
        title="Loss per image",
        xaxis={"title": "step"},
        yaxis={"title": "loss"},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return _figure_json(figure)
