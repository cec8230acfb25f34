"""Figures of a study's analyses, built from the JSON that `analyze_study` returns.

Every number there is an estimate `{value, low, high, seeds}` whose interval is a
bootstrap over seeds; the figures draw the interval as error bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.figures_compare import PALETTE, figure_json

OBSERVED_COLOUR = "#dd8452"
PREDICTION_COLOUR = "#4c72b0"
BETWEEN_FILL = "rgba(85, 168, 104, 0.15)"
# The modes figure shows bins up to this many past the last trained or generated one.
MODES_MARGIN_BINS = 2

Estimate = Mapping[str, Any]


def _values(estimates: Sequence[Estimate | None]) -> list[float | None]:
    return [None if estimate is None else estimate.get("value") for estimate in estimates]


def _error_bars(estimates: Sequence[Estimate | None]) -> dict[str, Any]:
    upper: list[float | None] = []
    lower: list[float | None] = []
    for estimate in estimates:
        value = None if estimate is None else estimate.get("value")
        low = None if estimate is None else estimate.get("low")
        high = None if estimate is None else estimate.get("high")
        known = value is not None and low is not None and high is not None
        upper.append(high - value if known else None)  # type: ignore[operator]
        lower.append(value - low if known else None)  # type: ignore[operator]
    return {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower}


def describe_estimate(estimate: Estimate | None, digits: int = 3) -> str:
    """Write an estimate as "v [low, high]", or "no value" when it has none."""
    if estimate is None or estimate.get("value") is None:
        return "no value"
    text = f"{estimate['value']:.{digits}f}"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{estimate['low']:.{digits}f}, {estimate['high']:.{digits}f}]"
    return text


def group_title(labels: Mapping[str, str], runs: Sequence[int]) -> str:
    """Name a group of runs by the sweep labels they share, else by their run numbers."""
    shown = [f"{axis} {label}" for axis, label in labels.items() if axis != "seed"]
    if shown:
        return ", ".join(shown)
    return "runs " + ", ".join(str(index + 1) for index in runs)


def modes_figure(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Plot the observed distribution against the additive prediction of the controls as bars."""
    bins: list[str] = list(entry["bins"])
    observed: list[Estimate] = entry.get("observed") or []
    prediction: list[Estimate] | None = entry.get("prediction")
    used = [
        index
        for index, estimate in enumerate([*observed, *(prediction or [])])
        if (estimate.get("value") or 0) > 0
    ]
    last = max((index % len(bins) for index in used), default=len(bins) - 1)
    upto = min(len(bins), last + 1 + MODES_MARGIN_BINS)

    figure = go.Figure()
    if observed:
        figure.add_bar(
            name="observed",
            x=bins[:upto],
            y=_values(observed[:upto]),
            error_y=_error_bars(observed[:upto]),
            marker_color=OBSERVED_COLOUR,
        )
    if prediction is not None:
        figure.add_bar(
            name="additive prediction",
            x=bins[:upto],
            y=_values(prediction[:upto]),
            error_y=_error_bars(prediction[:upto]),
            marker_color=PREDICTION_COLOUR,
        )
    for label in entry.get("between", []):
        if label in bins[:upto]:
            figure.add_vrect(
                x0=bins.index(label) - 0.5,
                x1=bins.index(label) + 0.5,
                fillcolor=BETWEEN_FILL,
                line_width=0,
                layer="below",
            )
    ratio = describe_estimate(entry.get("enhancement_ratio"), 2)
    heading = f"{group_title(entry.get('labels', {}), entry['runs'])}: {entry['feature']}"
    figure.update_layout(
        template="simple_white",
        title={"text": f"{heading}<br><sup>prototype-enhancement index {ratio}</sup>"},
        barmode="group",
        xaxis={"title": entry["feature"], "type": "category"},
        yaxis={"title": "share of recognized samples", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
    )
    return figure_json(figure)


def numerosity_figure(series: Mapping[str, Any]) -> dict[str, Any]:
    """Plot the mean generated count, and its spread, against the trained count."""
    points: list[Mapping[str, Any]] = series["points"]
    counts = [point["count"] for point in points]
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("mean generated count", "spread of the generated count"),
    )
    figure.add_scatter(
        name="trained count",
        x=counts,
        y=counts,
        mode="lines",
        line={"color": "#999999", "dash": "dot"},
        row=1,
        col=1,
    )
    for position, (name, key) in enumerate(
        (("mean", "mean"), ("standard deviation", "sd"), ("coefficient of variation", "cv"))
    ):
        estimates = [point[key] for point in points]
        figure.add_scatter(
            name=name,
            x=counts,
            y=_values(estimates),
            error_y=_error_bars(estimates),
            mode="lines+markers",
            line={"color": PALETTE[position % len(PALETTE)]},
            row=1,
            col=1 if key == "mean" else 2,
        )
    figure.update_xaxes(title_text="trained count k", dtick=1)
    figure.update_layout(
        template="simple_white",
        title=group_title(series.get("labels", {}), series["runs"]),
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
    )
    return figure_json(figure)


def combinations_figure(curve: Mapping[str, Any]) -> dict[str, Any]:
    """Plot precision, recall and recall at the target precision against the combinations."""
    points: list[Mapping[str, Any]] = curve["points"]
    sizes = [point["combinations"] for point in points]
    figure = go.Figure()
    names = (
        ("precision", "precision"),
        ("recall", "recall"),
        ("recall_at_precision", f"recall at precision {curve['target_precision']:g}"),
    )
    for position, (key, name) in enumerate(names):
        estimates = [point[key] for point in points]
        figure.add_scatter(
            name=name,
            x=sizes,
            y=_values(estimates),
            error_y=_error_bars(estimates),
            mode="lines+markers",
            line={"color": PALETTE[position % len(PALETTE)]},
        )
    figure.update_layout(
        template="simple_white",
        title=group_title(curve.get("labels", {}), curve["runs"]),
        xaxis={"title": "training combinations N", "type": "log", "tickvals": sizes},
        yaxis={"title": "share", "range": [0, 1.05]},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure_json(figure)


def analysis_figures(analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Build the figure of every modes entry, numerosity series and combinations curve."""
    return {
        "modes": [modes_figure(entry) for entry in analysis["modes"] if entry.get("observed")],
        "numerosity": [numerosity_figure(series) for series in analysis["numerosity"]],
        "combinations": [combinations_figure(curve) for curve in analysis["combinations"]],
    }
