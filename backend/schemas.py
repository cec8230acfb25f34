"""Response schemas of the API, named by role; routes never return ORM rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.store.models import Run, RunStatus, Snapshot, Study


def _as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes. Every stored time is UTC, so the JSON carries the offset.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class HistogramPublic(BaseModel):
    edges: list[float]
    counts: list[int]
    unrecognized: int
    total: int
    unrecognized_share: float

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> HistogramPublic:
        histogram = FeatureHistogram.model_validate(stored)
        return cls(**histogram.model_dump(), unrecognized_share=histogram.unrecognized_share)


def histograms_public(stored: dict[str, Any] | None) -> dict[str, HistogramPublic] | None:
    if stored is None:
        return None
    return {name: HistogramPublic.from_stored(value) for name, value in stored.items()}


class RunPublic(BaseModel):
    id: int
    study_id: int
    index: int
    status: RunStatus
    step: int
    steps: int
    progress: float
    error: str | None
    cancel_requested: bool
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    device: str | None
    worker_host: str | None
    training_histograms: dict[str, HistogramPublic] | None
    latest_snapshot_step: int | None

    @classmethod
    def from_row(cls, run: Run, latest_snapshot_step: int | None) -> RunPublic:
        return cls(
            id=run.id,
            study_id=run.study_id,
            index=run.index,
            status=run.status,
            step=run.step,
            steps=run.spec["training"]["steps"],
            progress=run.progress,
            error=run.error,
            cancel_requested=run.cancel_requested,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            device=run.device,
            worker_host=run.worker_host,
            training_histograms=histograms_public(run.training_histograms),
            latest_snapshot_step=latest_snapshot_step,
        )


class StudyPublic(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    design: dict[str, Any]
    runs: list[RunPublic]
    # The id of the newest event of the study: `GET .../events?after=` this id streams what follows.
    last_event_id: int | None = None

    @classmethod
    def from_row(
        cls, study: Study, latest_steps: dict[int, int], last_event_id: int | None = None
    ) -> StudyPublic:
        return cls(
            id=study.id,
            name=study.name,
            created_at=study.created_at,
            design=study.design,
            runs=[RunPublic.from_row(run, latest_steps.get(run.id)) for run in study.runs],
            last_event_id=last_event_id,
        )


class StudyCreated(StudyPublic):
    run_ids: list[int]


class StudiesPublic(BaseModel):
    studies: list[StudyPublic]
    count: int


class SnapshotPublic(BaseModel):
    id: int
    run_id: int
    step: int
    histograms: dict[str, HistogramPublic]
    losses: dict[str, float]
    grid_url: str | None
    created_at: UtcDatetime

    @classmethod
    def from_row(cls, snapshot: Snapshot) -> SnapshotPublic:
        grid_url = None
        if snapshot.grid_path:
            grid_url = f"/api/runs/{snapshot.run_id}/snapshots/{snapshot.step}/grid.png"
        return cls(
            id=snapshot.id,
            run_id=snapshot.run_id,
            step=snapshot.step,
            histograms=histograms_public(snapshot.histograms) or {},
            losses=snapshot.losses,
            grid_url=grid_url,
            created_at=snapshot.created_at,
        )


class SnapshotsPublic(BaseModel):
    snapshots: list[SnapshotPublic]


class MetricsPublic(BaseModel):
    run_id: int
    steps: list[int]
    series: dict[str, list[float | None]]


class FiguresPublic(BaseModel):
    step: int | None
    counts: dict[str, Any]
    loss: dict[str, Any]


class SnapshotEvent(BaseModel):
    run_id: int
    snapshot: SnapshotPublic
    figures: FiguresPublic
