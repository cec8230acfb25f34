"""Views across a study's runs: overlaid histograms by sweep axis, a run's heatmap over steps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from backend.deps import RunDep, SessionDep, StudyDep
from backend.figures_compare import OverlayGroup, heatmap_figure, overlay_figure
from backend.routes.analysis import StepQuery
from backend.routes.runs import run_features
from biaslab.analysis.histogram import FeatureHistogram
from biaslab.analysis.results import RunResult
from biaslab.design import design_points, varying_fields
from biaslab.families import Feature
from biaslab.store.results import snapshot_steps, study_results
from biaslab.store.studies import list_snapshots

router = APIRouter(tags=["compare"])

# `group_by` value that draws every run on its own.
EACH_RUN = "run"


class AxisPublic(BaseModel):
    name: str
    labels: list[str]


class ComparedRun(BaseModel):
    index: int
    id: int
    labels: dict[str, str]
    # The step of the snapshot drawn for this run; None when it has none yet.
    step: int | None


class VaryingField(BaseModel):
    """A design field whose value differs between runs, and each run's value by run index."""

    path: str
    values: dict[int, Any]


class OverlayPublic(BaseModel):
    name: str
    title: str
    figure: dict[str, Any]
    # Runs left out of this feature's figure because their bins differ from the others'.
    left_out: list[int]


class ComparePublic(BaseModel):
    study_id: int
    # Every step at which some run has a snapshot, ascending; the slider moves over these.
    steps: list[int]
    step: int | None
    axes: list[AxisPublic]
    group_by: str
    runs: list[ComparedRun]
    varying: list[VaryingField]
    features: list[OverlayPublic]


class HeatmapPublic(BaseModel):
    name: str
    title: str
    figure: dict[str, Any]


class RunHeatmapsPublic(BaseModel):
    run_id: int
    steps: list[int]
    features: list[HeatmapPublic]


GroupQuery = Annotated[
    str,
    Query(
        max_length=100,
        description=f"A sweep axis name to group runs by, or {EACH_RUN!r} for one series per run.",
    ),
]


@router.get("/api/studies/{study_id}/compare")
def compare(
    study: StudyDep, session: SessionDep, step: StepQuery = None, group_by: GroupQuery = EACH_RUN
) -> ComparePublic:
    """Return each feature's generated histograms of all runs overlaid, grouped by `group_by`."""
    points = design_points(study.design)
    axes = [
        AxisPublic(name=name, labels=list(dict.fromkeys(point.labels[name] for point in points)))
        for name in (points[0].labels if points else {})
    ]
    allowed = [EACH_RUN, *(axis.name for axis in axes)]
    if group_by not in allowed:
        raise RequestValidationError(
            [
                {
                    "type": "literal_error",
                    "loc": ("query", "group_by"),
                    "msg": f"Input should be one of {', '.join(repr(name) for name in allowed)}",
                    "input": group_by,
                }
            ]
        )

    run_ids = {run.index: run.id for run in study.runs}
    results = study_results(session, study, step)
    return ComparePublic(
        study_id=study.id,
        steps=snapshot_steps(session, list(run_ids.values())),
        step=step,
        axes=axes,
        group_by=group_by,
        runs=[
            ComparedRun(
                index=result.index,
                id=run_ids[result.index],
                labels=dict(result.labels),
                step=result.step,
            )
            for result in results.runs
        ],
        varying=_varying(results.runs),
        features=[
            overlay_public(feature, results.runs, group_by, step)
            for feature in study_features(results.runs)
        ],
    )


@router.get("/api/runs/{run_id}/heatmaps")
def heatmaps(run: RunDep, session: SessionDep, step: StepQuery = None) -> RunHeatmapsPublic:
    """Return, per feature, the run's generated shares at every snapshot as a heatmap."""
    snapshots = list_snapshots(session, run.id)
    steps = [snapshot.step for snapshot in snapshots]
    # The line marks the snapshot that the other views show: the newest at or before `step`.
    shown = [snapshot_step for snapshot_step in steps if step is None or snapshot_step <= step]
    marked = shown[-1] if shown else None
    training = run.training_histograms or {}
    features = []
    for feature in run_features(run).features:
        with_feature = [snapshot for snapshot in snapshots if feature.name in snapshot.histograms]
        histograms = [
            FeatureHistogram.model_validate(snapshot.histograms[feature.name])
            for snapshot in with_feature
        ]
        stored_training = training.get(feature.name)
        training_histogram = (
            FeatureHistogram.model_validate(stored_training) if stored_training else None
        )
        # A run resumed by a newer version can have snapshots on a feature's older
        # bins; the heatmap keeps those on the newest snapshot's bins.
        kept = list(zip([snapshot.step for snapshot in with_feature], histograms, strict=True))
        if histograms:
            bins = len(histograms[-1].counts)
            kept = [(step, histogram) for step, histogram in kept if len(histogram.counts) == bins]
            if training_histogram is not None and len(training_histogram.counts) != bins:
                training_histogram = None
        features.append(
            HeatmapPublic(
                name=feature.name,
                title=feature.title,
                figure=heatmap_figure(
                    feature.title,
                    [step for step, _ in kept],
                    [histogram for _, histogram in kept],
                    training_histogram,
                    marked,
                ),
            )
        )
    return RunHeatmapsPublic(run_id=run.id, steps=steps, features=features)


def study_features(runs: Sequence[RunResult]) -> list[Feature]:
    """Return the features of all runs by name, in the order first met."""
    found: dict[str, Feature] = {}
    for run in runs:
        for name, feature in run.features().items():
            found.setdefault(name, feature)
    return list(found.values())


def _varying(runs: list[RunResult]) -> list[VaryingField]:
    specs = [run.spec.model_dump(mode="json") for run in runs]
    fields = []
    for path in varying_fields(specs):
        values: dict[int, Any] = {}
        for run, spec in zip(runs, specs, strict=True):
            node: Any = spec
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values[run.index] = node
        fields.append(VaryingField(path=path, values=values))
    return fields


def _group_label(run: RunResult, group_by: str) -> str:
    if group_by != EACH_RUN:
        return f"{group_by} {run.labels.get(group_by, '?')}"
    varying = ", ".join(f"{axis} {label}" for axis, label in run.labels.items())
    return f"run {run.index + 1}" + (f" ({varying})" if varying else "")


def overlay_public(
    feature: Feature, runs: Sequence[RunResult], group_by: str, step: int | None
) -> OverlayPublic:
    """Overlay the feature's histograms of `runs`, one series per value of `group_by`.

    Runs are drawn on the bins that most of their stored histograms have, the
    feature's bins on a tie, so a study stored by an older version of a feature
    keeps its figure. Runs on other bins are listed in `left_out`.
    """
    stored = Counter(
        len(histogram.counts)
        for run in runs
        for histogram in (run.training.get(feature.name), run.generated.get(feature.name))
        if histogram is not None
    )
    bins = len(feature.centres)
    if stored and stored[bins] < max(stored.values()):
        bins = stored.most_common(1)[0][0]
    groups: dict[str, OverlayGroup] = {}
    left_out: list[int] = []
    for run in runs:
        training = run.training.get(feature.name)
        generated = run.generated.get(feature.name)
        if training is None and generated is None:
            continue
        if any(h is not None and len(h.counts) != bins for h in (training, generated)):
            left_out.append(run.index)
            continue
        label = _group_label(run, group_by)
        group = groups.setdefault(label, OverlayGroup(label, [], [], []))
        group.runs.append(run.index)
        if training is not None:
            group.training.append(training)
        if generated is not None:
            group.generated.append(generated)
    grouped_by = None if group_by == EACH_RUN else group_by
    return OverlayPublic(
        name=feature.name,
        title=feature.title,
        figure=overlay_figure(feature.title, list(groups.values()), step, grouped_by),
        left_out=left_out,
    )
