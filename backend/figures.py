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
# The x axis shows at least counts 1..MIN_COUNT_AXIS, so early sparse histograms keep a scale.
MIN_COUNT_AXIS = 8


def _figure_json(figure: go.Figure) -> dict[str, Any]:
    # plotly's own encoder turns numpy values into plain JSON.
    result: dict[str, Any] = json.loads(figure.to_json())
    return result


def _shares(histogram: FeatureHistogram, upto: int) -> list[float]:
    total = histogram.total or 1
    return [count / total for count in histogram.counts[:upto]]


def _last_nonzero_count(histogram: FeatureHistogram | None) -> int:
    if histogram is None:
        return 0
    nonzero = [index + 1 for index, count in enumerate(histogram.counts) if count]
    return max(nonzero, default=0)


def counts_figure(
    training: FeatureHistogram | None, generated: FeatureHistogram | None, step: int | None
) -> dict[str, Any]:
    """Bars of the share of images at each dot count, training beside generated.

    Shares are of all images, so the generated bars and the "unrecognized" bar
    add up to 1: samples the probe could not read are shown, never dropped.
    """
    upto = max(MIN_COUNT_AXIS, _last_nonzero_count(training) + 2, _last_nonzero_count(generated))
    labels = [str(count) for count in range(1, upto + 1)] + [UNRECOGNIZED_LABEL]
    figure = go.Figure()
    if training is not None:
        figure.add_bar(
            name="training",
            x=labels,
            y=[*_shares(training, upto), training.unrecognized_share],
            marker_color=TRAINING_COLOUR,
        )
    if generated is not None:
        figure.add_bar(
            name=f"generated (step {step})",
            x=labels,
            y=[*_shares(generated, upto), generated.unrecognized_share],
            marker_color=GENERATED_COLOUR,
        )
    title = "Dot counts"
    if generated is not None:
        title += f": {generated.unrecognized_share:.0%} of {generated.total} samples unrecognized"
    figure.update_layout(
        template="simple_white",
        title=title,
        barmode="group",
        xaxis={"title": "dots in image", "type": "category"},
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
