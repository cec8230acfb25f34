"""Runs: status, snapshots, metrics, figures, sample grids, cancel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from backend.deps import MAX_INTEGER, OwnedRunDep, RunDep, SessionDep, SettingsDep
from backend.figures import bin_labels, feature_figure, finite_or_none, loss_figure
from backend.schemas import (
    FeatureFigurePublic,
    FeaturePublic,
    FiguresPublic,
    MetricsPublic,
    RunFeaturesPublic,
    RunPublic,
    SnapshotPublic,
    SnapshotsPublic,
)
from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import Dataset
from biaslab.families import Feature, family_for
from biaslab.store.models import Run, Snapshot
from biaslab.store.studies import get_snapshot, list_metrics, list_snapshots, request_cancel

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/runs", tags=["runs"])

_DATASET = TypeAdapter(Dataset)


def run_public(session: Session, run: Run) -> RunPublic:
    latest = get_snapshot(session, run.id, None)
    return RunPublic.from_row(run, latest.step if latest else None)


def metrics_public(session: Session, run_id: int, upto_step: int | None = None) -> MetricsPublic:
    """Gather a run's metrics into one series per loss term, aligned on steps."""
    by_step: dict[int, dict[str, float | None]] = {}
    names: set[str] = set()
    for step, name, value in list_metrics(session, run_id, upto_step):
        by_step.setdefault(step, {})[name] = finite_or_none(value)
        names.add(name)
    steps = sorted(by_step)
    # The total loss first, then its terms, so colours read the same in every chart.
    ordered = sorted(names, key=lambda name: (name != "loss", name))
    series = {name: [by_step[step].get(name) for step in steps] for name in ordered}
    return MetricsPublic(run_id=run_id, steps=steps, series=series)


@dataclass(frozen=True)
class RunFeatures:
    """The dataset family of a run and the features its histograms hold."""

    family: str
    features: list[Feature]
    training_cells: list[dict[str, int]] | None = None


def run_features(run: Run) -> RunFeatures:
    """Return the family and features of a run's dataset design.

    A stored design that no longer validates (a field changed since the run
    was made) falls back to the features named in its training histograms.
    """
    dataset = run.spec.get("dataset", {})
    try:
        design = _DATASET.validate_python(dataset)
    except ValidationError as error:
        logger.warning("run %s: stored dataset design is invalid now: %s", run.id, error)
        stored = run.training_histograms or {}
        return RunFeatures(
            family=str(dataset.get("family", "unknown")),
            features=[_feature_of_histogram(name, value) for name, value in stored.items()],
        )
    family = family_for(design)
    return RunFeatures(
        family=family.name,
        features=family.features(design),
        training_cells=family.training_cells(design),
    )


def _feature_of_histogram(name: str, stored: dict[str, Any]) -> Feature:
    histogram = FeatureHistogram.model_validate(stored)
    edges = histogram.edges
    centres = tuple((low + high) / 2 for low, high in zip(edges[:-1], edges[1:], strict=False))
    return Feature(name=name, title=name, centres=centres, labels=tuple(bin_labels(histogram)))


def feature_figure_public(
    run: Run, feature: Feature, snapshot: Snapshot | None
) -> FeatureFigurePublic:
    training = (run.training_histograms or {}).get(feature.name)
    generated = snapshot.histograms.get(feature.name) if snapshot else None
    step = snapshot.step if snapshot else None
    return FeatureFigurePublic(
        name=feature.name,
        title=feature.title,
        step=step,
        figure=feature_figure(
            feature.title,
            FeatureHistogram.model_validate(training) if training else None,
            FeatureHistogram.model_validate(generated) if generated else None,
            step,
        ),
    )


def figures_public(session: Session, run: Run, snapshot: Snapshot | None) -> FiguresPublic:
    step = snapshot.step if snapshot else None
    metrics = metrics_public(session, run.id, upto_step=step)
    return FiguresPublic(
        step=step,
        features=[
            feature_figure_public(run, feature, snapshot) for feature in run_features(run).features
        ],
        loss=loss_figure(metrics.steps, metrics.series),
    )


def _snapshot_at(session: Session, run: Run, step: int | None) -> Snapshot | None:
    """Return the run's snapshot at `step` (404 when missing), or its newest when step is None."""
    snapshot = get_snapshot(session, run.id, step)
    if step is not None and snapshot is None:
        raise HTTPException(status_code=404, detail=f"run {run.id} has no snapshot at step {step}")
    return snapshot


@router.get("/{run_id}")
def read(run: RunDep, session: SessionDep) -> RunPublic:
    return run_public(session, run)


@router.get("/{run_id}/snapshots")
def snapshots(run: RunDep, session: SessionDep) -> SnapshotsPublic:
    return SnapshotsPublic(
        snapshots=[SnapshotPublic.from_row(row) for row in list_snapshots(session, run.id)]
    )


@router.get("/{run_id}/metrics")
def metrics(run: RunDep, session: SessionDep) -> MetricsPublic:
    return metrics_public(session, run.id)


@router.get("/{run_id}/features")
def features(run: RunDep) -> RunFeaturesPublic:
    """List the features that the run's histograms and figures hold, in display order."""
    found = run_features(run)
    return RunFeaturesPublic(
        run_id=run.id,
        family=found.family,
        features=[
            FeaturePublic(
                name=feature.name,
                title=feature.title,
                categorical=feature.categorical,
                labels=list(feature.labels),
            )
            for feature in found.features
        ],
        training_cells=found.training_cells,
    )


StepQuery = Annotated[int | None, Query(ge=0, le=MAX_INTEGER)]


@router.get("/{run_id}/figures")
def figures(run: RunDep, session: SessionDep, step: StepQuery = None) -> FiguresPublic:
    """Return every feature's figure and the loss curve at `step`, or at the newest snapshot."""
    return figures_public(session, run, _snapshot_at(session, run, step))


@router.get("/{run_id}/figures/{feature}")
def feature_figure_route(
    run: RunDep,
    feature: Annotated[str, Path(max_length=64)],
    session: SessionDep,
    step: StepQuery = None,
) -> FeatureFigurePublic:
    """Return one feature's figure at `step`, or at the newest snapshot."""
    known = {item.name: item for item in run_features(run).features}
    if feature not in known:
        raise HTTPException(
            status_code=404,
            detail=f"run {run.id} has no feature {feature!r}; its features are "
            f"{', '.join(known) or 'none'}",
        )
    return feature_figure_public(run, known[feature], _snapshot_at(session, run, step))


@router.get("/{run_id}/snapshots/{step}/grid.png", response_class=FileResponse)
def sample_grid(
    run: RunDep,
    step: Annotated[int, Path(ge=0, le=MAX_INTEGER)],
    session: SessionDep,
    settings: SettingsDep,
) -> FileResponse:
    snapshot = get_snapshot(session, run.id, step)
    if snapshot is None or snapshot.grid_path is None:
        raise HTTPException(
            status_code=404, detail=f"run {run.id} has no sample grid at step {step}"
        )
    root = settings.resolved_artifact_dir
    path = (root / snapshot.grid_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(
            status_code=404, detail=f"sample grid of run {run.id} at step {step} is missing"
        )
    return FileResponse(path, media_type="image/png")


@router.post("/{run_id}/cancel")
def cancel(run: OwnedRunDep, session: SessionDep) -> RunPublic:
    if not request_cancel(session, run):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=(
                f"run {run.id} has already ended as {run.status.value}; "
                "only queued or running runs can be cancelled"
            ),
        )
    session.commit()
    return run_public(session, run)
