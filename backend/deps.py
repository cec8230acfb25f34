"""Typed dependencies: the settings, a database session, and load-or-404 (or 403) of rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from backend.queue import RunQueue
from backend.run_statics import RunStaticsCache
from backend.security.audit import note_target
from backend.security.identity import CurrentUser, Principal
from backend.security.ownership import can_read, ensure_can_change
from biaslab.settings import Settings
from biaslab.store.db import session_scope
from biaslab.store.models import Run, Study
from biaslab.store.studies import get_study, get_study_summary


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


def get_queue(request: Request) -> RunQueue:
    queue: RunQueue = request.app.state.queue
    return queue


# Ids and steps are stored as 64-bit integers; larger values get a 422, not a database error.
MAX_INTEGER = 2**63 - 1
StudyId = Annotated[int, Path(ge=1, le=MAX_INTEGER)]
RunId = Annotated[int, Path(ge=1, le=MAX_INTEGER)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[RunQueue, Depends(get_queue)]


def _readable(
    study: Study | None, study_id: int, user: Principal | None, request: Request
) -> Study:
    # Someone else's private study is reported as missing, so its name does not leak.
    if study is None or not can_read(study, user):
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    note_target(request, study_id=study.id)
    return study


def load_study(
    study_id: StudyId, session: SessionDep, user: CurrentUser, request: Request
) -> Study:
    return _readable(get_study(session, study_id), study_id, user, request)


def load_study_summary(
    study_id: StudyId, session: SessionDep, user: CurrentUser, request: Request
) -> Study:
    """Load the study with its runs' designs and training histograms left unread."""
    return _readable(get_study_summary(session, study_id), study_id, user, request)


def get_run_statics(request: Request) -> RunStaticsCache:
    cache: RunStaticsCache = request.app.state.run_statics
    return cache


RunStaticsDep = Annotated[RunStaticsCache, Depends(get_run_statics)]
StudySummaryDep = Annotated[Study, Depends(load_study_summary)]


def load_run(run_id: RunId, session: SessionDep, user: CurrentUser, request: Request) -> Run:
    run = session.get(Run, run_id)
    if run is None or not can_read(run.study, user):
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    note_target(request, study_id=run.study_id, run_id=run.id)
    return run


StudyDep = Annotated[Study, Depends(load_study)]
RunDep = Annotated[Run, Depends(load_run)]


def load_owned_study(study: StudyDep, user: CurrentUser) -> Study:
    """Return the study when the user may change it; 403 naming its owner otherwise."""
    ensure_can_change(study, user)
    return study


def load_owned_run(run: RunDep, user: CurrentUser) -> Run:
    """Return the run when the user may change its study; 403 naming the owner otherwise."""
    ensure_can_change(run.study, user)
    return run


OwnedStudyDep = Annotated[Study, Depends(load_owned_study)]
OwnedRunDep = Annotated[Run, Depends(load_owned_run)]
