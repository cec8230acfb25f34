"""Studies: create (and queue their runs), list, read, rename, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from backend.deps import (
    MAX_INTEGER,
    OwnedStudyDep,
    QueueDep,
    RunStaticsDep,
    SessionDep,
    SettingsDep,
    StudySummaryDep,
)
from backend.schemas import RunPublic, StudiesPublic, StudyCreated, StudyPublic, StudyUpdate
from backend.security.audit import note_target
from backend.security.identity import CurrentUser
from biaslab.artifacts import delete_run_artifacts
from biaslab.design import StudyCreate
from biaslab.store.studies import (
    create_study,
    delete_study,
    last_event_id,
    latest_snapshot_steps,
    list_studies,
)
from biaslab.store.users import visible_studies

router = APIRouter(prefix="/api/studies", tags=["studies"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create(
    design: StudyCreate, session: SessionDep, queue: QueueDep, user: CurrentUser, request: Request
) -> StudyCreated:
    study = create_study(session, design, owner_id=user.user_id if user else None)
    session.commit()
    note_target(request, study_id=study.id)
    run_ids = [run.id for run in study.runs]
    queue.send_runs(study.runs)
    public = StudyPublic.from_row(study, {}, last_event_id(session, study.id))
    return StudyCreated(**public.model_dump(), run_ids=run_ids)


@router.get("")
def list_all(
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INTEGER)] = 0,
) -> StudiesPublic:
    visible = visible_studies(user.user_id, user.is_admin) if user else None
    studies, total = list_studies(session, limit, offset, visible)
    run_ids = [run.id for study in studies for run in study.runs]
    latest = latest_snapshot_steps(session, run_ids)
    return StudiesPublic(
        studies=[StudyPublic.from_row(study, latest) for study in studies], count=total
    )


@router.get("/{study_id}")
def read(study: StudySummaryDep, session: SessionDep, statics: RunStaticsDep) -> StudyPublic:
    """Return the study and the state of each of its runs."""
    run_ids = [run.id for run in study.runs]
    latest = latest_snapshot_steps(session, run_ids)
    parts = statics.get(session, study.runs)
    runs = [
        RunPublic.from_parts(
            run, latest.get(run.id), parts[run.id].steps, parts[run.id].training_histograms
        )
        for run in study.runs
        if run.id in parts
    ]
    return StudyPublic.from_parts(study, runs, last_event_id(session, study.id))


@router.patch("/{study_id}")
def update(change: StudyUpdate, study: OwnedStudyDep, session: SessionDep) -> StudyPublic:
    """Rename a study or change whether it is private; only its owner or an admin may."""
    if change.name is not None:
        study.name = change.name
        # The design keeps the name too, so that a variant of the study starts from it.
        study.design = {**study.design, "name": change.name}
    if change.private is not None:
        study.private = change.private
    session.commit()
    latest = latest_snapshot_steps(session, [run.id for run in study.runs])
    return StudyPublic.from_row(study, latest, last_event_id(session, study.id))


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(study: OwnedStudyDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete a study, its runs (which stop training) and their files; owner or admin only."""
    run_ids = [run.id for run in study.runs]
    delete_study(session, study)
    session.commit()
    # The files go after the commit, so a failed commit leaves the study whole.
    delete_run_artifacts(settings.resolved_artifact_dir, run_ids)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
