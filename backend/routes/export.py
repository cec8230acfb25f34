"""Exports of a study (results as CSV and JSON, the whole study as a bundle) and bundle imports."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.deps import SessionDep, SettingsDep, StudyDep
from backend.figures_analysis import analysis_figures
from backend.routes.analysis import study_analysis
from backend.routes.compare import EACH_RUN, overlay_public, study_features
from backend.schemas import StudyPublic
from backend.security.audit import note_target
from backend.security.identity import CurrentUser
from biaslab.bundle import MAX_BUNDLE_BYTES, InvalidBundle, read_bundle, results_csv, write_bundle
from biaslab.settings import Settings
from biaslab.store.bundles import export_study, import_bundle, newest_grids
from biaslab.store.models import Study
from biaslab.store.results import study_results
from biaslab.store.studies import last_event_id, latest_snapshot_steps

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/studies", tags=["export"])

BUNDLE_MEDIA_TYPES = ("application/zip", "application/octet-stream")


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "axis"


def bundle_figures(session: Session, study: Study, analysis: dict[str, Any]) -> dict[str, Any]:
    """Build the figures a bundle carries: overlays by run and by each axis, and the analyses'."""
    results = study_results(session, study).runs
    axes = list(results[0].labels) if results else []
    figures: dict[str, Any] = {}
    for feature in study_features(results):
        for group_by in (EACH_RUN, *axes):
            name = f"overlay-{_slug(feature.name)}-by-{_slug(group_by)}"
            figures[name] = overlay_public(feature, results, group_by, None).figure
    for section, built in analysis_figures(analysis).items():
        for position, figure in enumerate(built):
            figures[f"{section}-{position + 1}"] = figure
    return figures


def study_bundle(session: Session, study: Study, settings: Settings) -> bytes:
    """Return the zip bytes of the study's bundle."""
    analysis = study_analysis(session, study, None)
    return write_bundle(
        export_study(session, study),
        analysis,
        bundle_figures(session, study, analysis),
        newest_grids(session, study, settings.resolved_artifact_dir),
    )


@router.get("/{study_id}/export.json")
def export_json(study: StudyDep, session: SessionDep) -> Response:
    """Return the study, its design and every run's histograms, scores and metrics as JSON."""
    body = export_study(session, study).model_dump_json(indent=1)
    return Response(
        body, media_type="application/json", headers=_attachment(f"study-{study.id}.json")
    )


@router.get("/{study_id}/export.csv")
def export_csv(study: StudyDep, session: SessionDep) -> Response:
    """Return every training and generated histogram of the study, one row per bin."""
    return Response(
        results_csv(export_study(session, study)),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(f"study-{study.id}.csv"),
    )


@router.get("/{study_id}/bundle")
def bundle(study: StudyDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Return the study bundle: design, package versions, results, analyses and figures."""
    return Response(
        study_bundle(session, study, settings),
        media_type="application/zip",
        headers=_attachment(f"study-{study.id}-bundle.zip"),
    )


def _too_large() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"bundle: larger than the limit of {MAX_BUNDLE_BYTES:,} bytes",
    )


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_study(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> StudyPublic:
    """Import a bundle sent as the request body (application/zip) as a new study."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise HTTPException(
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"send the bundle as the body with content type {BUNDLE_MEDIA_TYPES[0]}",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BUNDLE_BYTES:
        raise _too_large()
    # Count the bytes that arrive too, because a client can send more than it declares.
    pieces: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BUNDLE_BYTES:
            raise _too_large()
        pieces.append(chunk)
    owner_id = user.user_id if user else None
    # Checking and storing take seconds for a large bundle, so they run off the event loop.
    public = await run_in_threadpool(_import, b"".join(pieces), session, settings, owner_id)
    note_target(request, study_id=public.id)
    return public


def _import(data: bytes, session: Session, settings: Settings, owner_id: int | None) -> StudyPublic:
    try:
        checked = read_bundle(data)
    except InvalidBundle as error:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"bundle: {error}"
        ) from error
    study = import_bundle(session, checked, settings.resolved_artifact_dir, owner_id)
    session.commit()
    logger.info("imported study %s of a bundle as study %s", checked.export.study.id, study.id)
    latest = latest_snapshot_steps(session, [run.id for run in study.runs])
    return StudyPublic.from_row(study, latest, last_event_id(session, study.id))
