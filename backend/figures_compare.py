"""Figures that compare runs: overlaid histograms by group, and a run's histogram over steps.

Shares are of all images, as in the single-run charts: the bins and the
"unrecognized" bar of a histogram add up to 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from backend.figures import MAX_UNTRIMMED_BINS, MIN_TRIMMED_AXIS, UNRECOGNIZED_LABEL, bin_labels
from biaslab.analysis.bootstrap import Estimate, mean_profile
from biaslab.analysis.histogram import FeatureHistogram

PALETTE: tuple[str, ...] = tuple(qualitative.D3)
HEATMAP_SCALE = "Viridis"


@dataclass(frozen=True)
class OverlayGroup:
    """Runs drawn as one series: the group's label and each run's histograms of one feature."""

    label: str
    runs: list[int]
    training: list[FeatureHistogram]
    generated: list[FeatureHistogram]


def shares(histogram: FeatureHistogram) -> np.ndarray:
    """Return the share of all images in each bin, then the unrecognized share last."""
    total = histogram.total or 1
    counts = np.asarray([*histogram.counts, histogram.unrecognized], dtype=np.float64)
    return counts / total


def shown_bins(histograms: Sequence[FeatureHistogram]) -> int:
    """Return how many leading bins to draw: all of a short feature, the used ones of a long one."""
    bins = max((len(histogram.counts) for histogram in histograms), default=0)
    if bins <= MAX_UNTRIMMED_BINS:
        return bins
    used = [
        max((index + 1 for index, count in enumerate(histogram.counts) if count), default=0)
        for histogram in histograms
    ]
    # Two empty bins past the last value in use show where generation may spread.
    return min(bins, max(MIN_TRIMMED_AXIS, max(used, default=0) + 2))


def overlay_figure(
    title: str, groups: Sequence[OverlayGroup], step: int | None, grouped_by: str | None
) -> dict[str, Any]:
    """Draw each group's generated shares as bars and its training shares as lines on their bins.

    A group of several runs shows the mean share over its runs, with a bootstrap
    interval over them as error bars. Groups whose training shares agree share one
    training line.
    """
    histograms = [h for group in groups for h in (*group.training, *group.generated)]
    if not histograms:
        return figure_json(_empty_layout(go.Figure(), title, "No histograms of this feature yet."))
    upto = shown_bins(histograms)
    first = next(iter(histograms))
    categories = [*bin_labels(first)[:upto], UNRECOGNIZED_LABEL]
    keep = [*range(upto), len(first.counts)]

    figure = go.Figure()
    training_lines: list[np.ndarray] = []
    for position, group in enumerate(groups):
        colour = PALETTE[position % len(PALETTE)]
        if group.generated:
            rows = np.stack([shares(histogram)[keep] for histogram in group.generated])
            profile = mean_profile(rows)
            values = [estimate.value for estimate in profile]
            figure.add_bar(
                name=group.label,
                legendgroup=group.label,
                x=categories,
                y=values,
                marker_color=colour,
                error_y=error_bars(profile) if len(group.generated) > 1 else None,
                customdata=[len(group.generated)] * len(categories),
                hovertemplate=(
                    f"{group.label}<br>%{{x}}: %{{y:.3f}}<br>mean of %{{customdata}} runs"
                    "<extra></extra>"
                ),
            )
        if group.training:
            line = np.mean([shares(histogram)[keep] for histogram in group.training], axis=0)
            if any(np.allclose(line, seen, atol=1e-3) for seen in training_lines):
                continue
            training_lines.append(line)
            figure.add_scatter(
                name=f"training: {group.label}" if len(groups) > 1 else "training",
                legendgroup=group.label,
                x=categories,
                y=line.tolist(),
                mode="lines+markers",
                line={"color": colour, "dash": "dash", "shape": "hvh", "width": 2},
                marker={"symbol": "line-ew-open", "size": 14, "color": colour},
            )
    heading = title if step is None else f"{title} at step {step}"
    if grouped_by:
        heading += f", by {grouped_by}"
    figure.update_layout(
        template="simple_white",
        title=heading,
        barmode="group",
        xaxis={"title": title, "type": "category"},
        yaxis={"title": "share of images", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure_json(figure)


def error_bars(estimates: Sequence[Estimate]) -> dict[str, Any]:
    """Return Plotly error bars from each estimate to the ends of its interval."""
    upper: list[float | None] = []
    lower: list[float | None] = []
    for estimate in estimates:
        finite = bool(np.isfinite([estimate.value, estimate.low, estimate.high]).all())
        upper.append(estimate.high - estimate.value if finite else None)
        lower.append(estimate.value - estimate.low if finite else None)
    return {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower}


def figure_json(figure: go.Figure) -> dict[str, Any]:
    # plotly's own encoder turns numpy values into plain JSON.
    result: dict[str, Any] = json.loads(figure.to_json())
    return result


def heatmap_figure(
    title: str,
    steps: Sequence[int],
    generated: Sequence[FeatureHistogram],
    training: FeatureHistogram | None,
    marked_step: int | None,
) -> dict[str, Any]:
    """Draw one run's generated shares per bin (rows) at each snapshot (columns) as a heatmap.

    A narrow column beside it shows the training shares on the same bins, and a
    line marks `marked_step`.
    """
    figure = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        column_widths=[0.88, 0.12],
        horizontal_spacing=0.02,
    )
    histograms = [*generated, *([training] if training is not None else [])]
    if not histograms:
        return figure_json(_empty_layout(figure, title, "No histograms of this feature yet."))
    upto = shown_bins(histograms)
    first = histograms[0]
    rows = [*bin_labels(first)[:upto], UNRECOGNIZED_LABEL]
    keep = [*range(upto), len(first.counts)]
    if generated:
        z = np.stack([shares(histogram)[keep] for histogram in generated], axis=1)
        figure.add_heatmap(
            x=list(steps),
            y=rows,
            z=z.tolist(),
            coloraxis="coloraxis",
            name="generated",
            hovertemplate="step %{x}<br>%{y}: %{z:.3f}<extra>generated</extra>",
            row=1,
            col=1,
        )
    if training is not None:
        figure.add_heatmap(
            x=["training"],
            y=rows,
            z=shares(training)[keep][:, None].tolist(),
            coloraxis="coloraxis",
            name="training",
            hovertemplate="%{y}: %{z:.3f}<extra>training</extra>",
            row=1,
            col=2,
        )
    if marked_step is not None and generated:
        figure.add_vline(x=marked_step, line={"color": "white", "width": 2}, row=1, col=1)
    figure.update_layout(
        template="simple_white",
        title=f"{title} over training steps",
        coloraxis={"colorscale": HEATMAP_SCALE, "cmin": 0, "colorbar": {"title": "share"}},
        margin={"l": 90, "r": 20, "t": 50, "b": 40},
    )
    figure.update_xaxes(title_text="step", row=1, col=1)
    figure.update_yaxes(title_text=title, type="category", row=1, col=1)
    return figure_json(figure)


def _empty_layout(figure: go.Figure, title: str, message: str) -> go.Figure:
    figure.update_layout(
        template="simple_white",
        title=title,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 14}}],
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure
