"""A study's rows as a bundle's `StudyExport`, and an imported bundle as new rows."""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from biaslab.bundle import (
    Bundle,
    BundleMetric,
    BundleRun,
    BundleSnapshot,
    BundleStudy,
    StudyExport,
    finite_or_none,
    package_versions,
)
from biaslab.design import RunSpec
from biaslab.store.models import Metric, Run, RunStatus, Snapshot, Study, utcnow
from biaslab.store.results import run_metrics, run_snapshots

logger = logging.getLogger(__name__)


def export_study(session: Session, study: Study) -> StudyExport:
    """Return the study, its design and every run with its snapshots and metrics."""
    run_ids = [run.id for run in study.runs]
    snapshots = run_snapshots(session, run_ids)
    metrics = run_metrics(session, run_ids)
    return StudyExport(
        exported_at=datetime.now(UTC),
        package_versions=package_versions(),
        study=BundleStudy(
            id=study.id, name=study.name, created_at=_utc(study.created_at), design=study.design
        ),
        runs=[
            BundleRun(
                index=run.index,
                spec=run.spec,
                status=run.status,
                step=run.step,
                progress=run.progress,
                error=run.error,
                created_at=_utc(run.created_at),
                started_at=_utc(run.started_at) if run.started_at else None,
                finished_at=_utc(run.finished_at) if run.finished_at else None,
                device=run.device,
                worker_host=run.worker_host,
                training_histograms=run.training_histograms,
                snapshots=[
                    BundleSnapshot(
                        step=snapshot.step,
                        histograms=snapshot.histograms,
                        scores=snapshot.scores or {},
                        losses={
                            name: finite_or_none(float(value))
                            for name, value in snapshot.losses.items()
                            if value is not None
                        },
                    )
                    for snapshot in snapshots[run.id]
                ],
                metrics=[
                    BundleMetric(
                        step=metric.step, name=metric.name, value=finite_or_none(metric.value)
                    )
                    for metric in metrics[run.id]
                ],
            )
            for run in study.runs
        ],
    )


def newest_grids(
    session: Session, study: Study, artifact_dir: Path
) -> dict[tuple[int, int], bytes]:
    """Return the PNG sample grid of each run's newest snapshot that has one, by (index, step).

    Grids missing from the artifact folder are left out.
    """
    root = artifact_dir.resolve()
    snapshots = run_snapshots(session, [run.id for run in study.runs])
    grids: dict[tuple[int, int], bytes] = {}
    for run in study.runs:
        with_grid = [snapshot for snapshot in snapshots[run.id] if snapshot.grid_path]
        if not with_grid:
            continue
        newest = with_grid[-1]
        path = (root / str(newest.grid_path)).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            logger.warning("study %s run %s: sample grid %s is missing", study.id, run.id, path)
            continue
        grids[(run.index, newest.step)] = path.read_bytes()
    return grids


def import_bundle(
    session: Session, bundle: Bundle, artifact_dir: Path, owner_id: int | None = None
) -> Study:
    """Add the bundle's study, runs, snapshots and metrics as a new study; the caller commits.

    Runs that had not ended when the bundle was made are stored as cancelled,
    with the reason in their error, because no worker trains an imported run.
    Metrics whose value was not finite are left out, since the store keeps numbers only.
    """
    export = bundle.export
    study = Study(
        name=export.study.name,
        design=bundle.design.model_dump(mode="json"),
        owner_id=owner_id,
        imported_from={
            "study_id": export.study.id,
            "study_created_at": export.study.created_at.isoformat(),
            "exported_at": export.exported_at.isoformat(),
            "package_versions": export.package_versions,
        },
    )
    session.add(study)
    runs: list[tuple[BundleRun, Run]] = []
    for item in sorted(export.runs, key=lambda run: run.index):
        status, error = item.status, item.error
        if not status.is_terminal:
            status = RunStatus.cancelled
            error = f"imported while {item.status.value} at step {item.step}; it did not end"
        run = Run(
            index=item.index,
            spec=RunSpec.model_validate(item.spec).model_dump(mode="json"),
            status=status,
            step=item.step,
            progress=item.progress,
            error=error,
            created_at=item.created_at,
            started_at=item.started_at,
            finished_at=item.finished_at or (utcnow() if status != item.status else None),
            device=item.device,
            worker_host=item.worker_host,
            training_histograms=(
                {name: h.model_dump(mode="json") for name, h in item.training_histograms.items()}
                if item.training_histograms is not None
                else None
            ),
        )
        study.runs.append(run)
        runs.append((item, run))
    session.flush()

    for item, run in runs:
        for snapshot in item.snapshots:
            grid = bundle.grids.get((item.index, snapshot.step))
            session.add(
                Snapshot(
                    run_id=run.id,
                    step=snapshot.step,
                    histograms={
                        n: h.model_dump(mode="json") for n, h in snapshot.histograms.items()
                    },
                    scores=dict(snapshot.scores),
                    losses={n: v for n, v in snapshot.losses.items() if v is not None},
                    grid_path=(
                        _write_grid(artifact_dir, run.id, snapshot.step, grid) if grid else None
                    ),
                )
            )
        session.add_all(
            Metric(run_id=run.id, step=metric.step, name=metric.name, value=metric.value)
            for metric in item.metrics
            if metric.value is not None and math.isfinite(metric.value)
        )
    session.flush()
    return study


def _write_grid(artifact_dir: Path, run_id: int, step: int, png: bytes) -> str:
    """Write a grid where the worker would have written it; return its relative path."""
    relative = Path("runs") / str(run_id) / f"step_{step:07d}.png"
    path = artifact_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".png.partial")
    partial.write_bytes(png)
    os.replace(partial, path)
    return relative.as_posix()


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
