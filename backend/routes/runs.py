"""Runs: status, snapshots, metrics, figures, sample grids, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from backend.deps import MAX_INTEGER, RunDep, SessionDep, SettingsDep
from backend.figures import counts_figure, finite_or_none, loss_figure
from backend.schemas import (
    FiguresPublic,
    MetricsPublic,
    RunPublic,
    SnapshotPublic,
    SnapshotsPublic,
)
from biaslab.analysis.histogram import FeatureHistogram
from biaslab.store.models import Run, Snapshot
from biaslab.store.studies import get_snapshot, list_metrics, list_snapshots, request_cancel

router = APIRouter(prefix="/api/runs", tags=["runs"])


def run_public(session: Session, run: Run) -> RunPublic:
    latest = get_snapshot(session, run.id, None)
    return RunPublic.from_row(run, latest.step if latest else None)


def metrics_public(session: Session, run_id: int, upto_step: int | None = None) -> MetricsPublic:
    """Gather a run's metrics into one series per loss term, aligned on steps."""
    by_step: dict[int, dict[str, float | None]] = {}
    names: set[str] = set()
    for metric in list_metrics(session, run_id):
        if upto_step is not None and metric.step > upto_step:
            continue
        by_step.setdefault(metric.step, {})[metric.name] = finite_or_none(metric.value)
        names.add(metric.name)
    steps = sorted(by_step)
    # The total loss first, then its terms, so colours read the same in every chart.
    ordered = sorted(names, key=lambda name: (name != "loss", name))
    series = {name: [by_step[step].get(name) for step in steps] for name in ordered}
    return MetricsPublic(run_id=run_id, steps=steps, series=series)


def figures_public(session: Session, run: Run, snapshot: Snapshot | None) -> FiguresPublic:
    training = (run.training_histograms or {}).get("count")
    generated = snapshot.histograms.get("count") if snapshot else None
    step = snapshot.step if snapshot else None
    metrics = metrics_public(session, run.id, upto_step=step)
    return FiguresPublic(
        step=step,
        counts=counts_figure(
            FeatureHistogram.model_validate(training) if training else None,
            FeatureHistogram.model_validate(generated) if generated else None,
            step,
        ),
        loss=loss_figure(metrics.steps, metrics.series),
    )


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


@router.get("/{run_id}/figures")
def figures(
    run: RunDep,
    session: SessionDep,
    step: Annotated[int | None, Query(ge=0, le=MAX_INTEGER)] = None,
) -> FiguresPublic:
    snapshot = get_snapshot(session, run.id, step)
    if step is not None and snapshot is None:
        raise HTTPException(status_code=404, detail=f"run {run.id} has no snapshot at step {step}")
    return figures_public(session, run, snapshot)


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
def cancel(run: RunDep, session: SessionDep) -> RunPublic:
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
