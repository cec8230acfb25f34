"""Plotly figures built server-side, so the browser only calls `Plotly.react`.

The study page requests these two figures on every step and every event, so
they are written as plain Plotly JSON. Building them through
`plotly.graph_objects` validates every property and copies the template each
time, which cost 14-18 ms per figure; the dicts here cost microseconds. The
figures of the compare and analysis views, asked for far less often, go
through plotly.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.io as pio

from biaslab.analysis.histogram import FeatureHistogram

TRAINING_COLOUR = "#4c72b0"
GENERATED_COLOUR = "#dd8452"
UNRECOGNIZED_LABEL = "unrecognized"
# Features with more bins than this (dot counts have 32) show only the bins up to
# the last one in use, and at least MIN_TRIMMED_AXIS of them, so that early sparse
# histograms keep a scale. Features with fewer bins, such as the pie's red share
# with 17, always show all of them.
MAX_UNTRIMMED_BINS = 17
MIN_TRIMMED_AXIS = 8


# Layout settings shared by the run page's figures.
_LEGEND = {"orientation": "h", "y": -0.25}
_MARGIN = {"l": 60, "r": 20, "t": 50, "b": 40}


@functools.cache
def _template() -> dict[str, Any]:
    """Return the layout template of the run page's figures as Plotly JSON."""
    template: dict[str, Any] = pio.templates["simple_white"].to_plotly_json()
    return template


def _layout(title: str, **axes: Any) -> dict[str, Any]:
    """Return a figure layout with the shared template, legend and margins.

    Every figure contains the same template dict, so nothing may edit it. The
    figures are only serialized to JSON.
    """
    return {
        "template": _template(),
        "title": {"text": title},
        "legend": dict(_LEGEND),
        "margin": dict(_MARGIN),
        **axes,
    }


def _axis(title: str, **settings: Any) -> dict[str, Any]:
    return {"title": {"text": title}, **settings}


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
    data = []
    if training is not None:
        data.append(_bars("training", training, upto, TRAINING_COLOUR))
    if generated is not None:
        data.append(_bars(f"generated (step {step})", generated, upto, GENERATED_COLOUR))
    heading = title
    if generated is not None:
        share = generated.unrecognized_share
        heading += f": {share:.0%} of {generated.total} samples unrecognized"
    layout = _layout(
        heading,
        barmode="group",
        xaxis=_axis(title, type="category"),
        yaxis=_axis("share of images", rangemode="tozero"),
    )
    return {"data": data, "layout": layout}


def _bars(name: str, histogram: FeatureHistogram, upto: int, colour: str) -> dict[str, Any]:
    return {
        "type": "bar",
        "name": name,
        "x": [*bin_labels(histogram)[:upto], UNRECOGNIZED_LABEL],
        "y": [*_shares(histogram, upto), histogram.unrecognized_share],
        "marker": {"color": colour},
    }


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity; a non-finite loss is sent as null."""
    return value if math.isfinite(value) else None


def loss_figure(
    steps: Sequence[int], series: Mapping[str, Sequence[float | None]]
) -> dict[str, Any]:
    """Lines of each loss term against the training step."""
    data = [
        {"type": "scatter", "mode": "lines", "name": name, "x": list(steps), "y": list(values)}
        for name, values in series.items()
    ]
    layout = _layout("Loss per image", xaxis=_axis("step"), yaxis=_axis("loss"))
    return {"data": data, "layout": layout}
