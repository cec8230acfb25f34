"""Response schemas of the API, named by role; routes never return ORM rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from biaslab.store.models import Run, RunStatus, Snapshot, Study


def _as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes. Every stored time is UTC, so the JSON carries the offset.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class HistogramPublic(BaseModel):
    edges: list[float]
    # One label per bin; empty in histograms stored before bins had labels.
    labels: list[str] = []
    counts: list[int]
    unrecognized: int
    total: int
    unrecognized_share: float

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> HistogramPublic:
        total = stored.get("total") or 0
        share = stored.get("unrecognized", 0) / total if total else 0.0
        return cls.model_validate({**stored, "unrecognized_share": share})


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
    # Why a queued run is not training yet, such as its owner's limit of runs in flight.
    waiting_reason: str | None = None

    @classmethod
    def from_row(cls, run: Run, latest_snapshot_step: int | None) -> RunPublic:
        return cls.from_parts(
            run,
            latest_snapshot_step,
            steps=run.spec["training"]["steps"],
            training_histograms=histograms_public(run.training_histograms),
        )

    @classmethod
    def from_parts(
        cls,
        run: Run,
        latest_snapshot_step: int | None,
        steps: int,
        training_histograms: dict[str, HistogramPublic] | None,
    ) -> RunPublic:
        """Build the view of a run row whose design and training histograms were read apart."""
        return cls(
            id=run.id,
            study_id=run.study_id,
            index=run.index,
            status=run.status,
            step=run.step,
            steps=steps,
            progress=run.progress,
            error=run.error,
            cancel_requested=run.cancel_requested,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            device=run.device,
            worker_host=run.worker_host,
            training_histograms=training_histograms,
            latest_snapshot_step=latest_snapshot_step,
            waiting_reason=run.waiting_reason if run.status is RunStatus.queued else None,
        )


class StudyPublic(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    design: dict[str, Any]
    runs: list[RunPublic]
    # The id of the newest event of the study: `GET .../events?after=` this id streams what follows.
    last_event_id: int | None = None
    # The owner's user name; None for a study made while authentication was off.
    owner: str | None = None
    private: bool = False
    # Where an imported study came from: the exporting lab's study id, dates and package versions.
    imported_from: dict[str, Any] | None = None

    @classmethod
    def from_row(
        cls, study: Study, latest_steps: dict[int, int], last_event_id: int | None = None
    ) -> StudyPublic:
        runs = [RunPublic.from_row(run, latest_steps.get(run.id)) for run in study.runs]
        return cls.from_parts(study, runs, last_event_id)

    @classmethod
    def from_parts(
        cls, study: Study, runs: list[RunPublic], last_event_id: int | None = None
    ) -> StudyPublic:
        """Build the view of a study row from the views of its runs."""
        return cls(
            id=study.id,
            name=study.name,
            created_at=study.created_at,
            design=study.design,
            runs=runs,
            last_event_id=last_event_id,
            owner=study.owner.name if study.owner else None,
            private=study.private,
            imported_from=study.imported_from,
        )


class StudyUpdate(BaseModel):
    """A change of a study's name or privacy; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
        ]
        | None
    ) = None
    private: bool | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> StudyUpdate:
        if self.name is None and self.private is None:
            raise ValueError("send `name`, `private` or both")
        return self


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
    # The dataset family's summary numbers, such as precision and recall; null where undefined.
    scores: dict[str, float | None]
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
            scores=snapshot.scores or {},
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


class FeaturePublic(BaseModel):
    name: str
    title: str
    categorical: bool
    labels: list[str]


class RunFeaturesPublic(BaseModel):
    run_id: int
    family: str
    features: list[FeaturePublic]
    # The run's training cells ({size, x, y, red} for combinations) in the order of
    # the `cell` bins; null for a family that does not draw from listed cells.
    training_cells: list[dict[str, int]] | None = None


class FeatureFigurePublic(BaseModel):
    """One feature's chart: training beside the generated histogram at `step`."""

    name: str
    title: str
    step: int | None
    figure: dict[str, Any]


class FiguresPublic(BaseModel):
    step: int | None
    # One figure per feature of the run's dataset family, in the family's order.
    features: list[FeatureFigurePublic]
    loss: dict[str, Any]


class SnapshotEvent(BaseModel):
    run_id: int
    snapshot: SnapshotPublic
    figures: FiguresPublic
