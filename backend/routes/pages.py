"""The browser pages and their static files; Plotly.js comes from the installed plotly package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import plotly
from fastapi import APIRouter
from fastapi.responses import FileResponse

from backend.deps import StudyId

FRONTEND_DIR = Path(str(resources.files("frontend")))
PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(FRONTEND_DIR / "index.html")


@router.get("/studies/{study_id}")
def study_page(study_id: StudyId) -> FileResponse:
    # The page loads the study itself and shows "not found" when it does not exist.
    return FileResponse(FRONTEND_DIR / "study.html")


@router.get("/workers")
def workers_page() -> FileResponse:
    return FileResponse(FRONTEND_DIR / "workers.html")


@router.get("/probe")
def probe_page() -> FileResponse:
    return FileResponse(FRONTEND_DIR / "probe.html")
