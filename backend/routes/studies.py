"""Studies: create (and queue their runs), list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.deps import MAX_INTEGER, QueueDep, SessionDep, StudyDep
from backend.schemas import StudiesPublic, StudyCreated, StudyPublic
from biaslab.design import StudyCreate
from biaslab.store.studies import (
    create_study,
    last_event_id,
    latest_snapshot_steps,
    list_studies,
)

router = APIRouter(prefix="/api/studies", tags=["studies"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create(design: StudyCreate, session: SessionDep, queue: QueueDep) -> StudyCreated:
    study = create_study(session, design)
    session.commit()
    run_ids = [run.id for run in study.runs]
    queue.send(run_ids)
    public = StudyPublic.from_row(study, {}, last_event_id(session, study.id))
    return StudyCreated(**public.model_dump(), run_ids=run_ids)


@router.get("")
def list_all(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INTEGER)] = 0,
) -> StudiesPublic:
    studies, total = list_studies(session, limit, offset)
    run_ids = [run.id for study in studies for run in study.runs]
    latest = latest_snapshot_steps(session, run_ids)
    return StudiesPublic(
        studies=[StudyPublic.from_row(study, latest) for study in studies], count=total
    )


@router.get("/{study_id}")
def read(study: StudyDep, session: SessionDep) -> StudyPublic:
    latest = latest_snapshot_steps(session, [run.id for run in study.runs])
    return StudyPublic.from_row(study, latest, last_event_id(session, study.id))
