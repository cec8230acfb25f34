"""The JSON schema of a study design, from which the browser designer builds its form."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter

from biaslab.design import StudyCreate

router = APIRouter(prefix="/api/design", tags=["design"])


@cache
def _study_schema() -> dict[str, Any]:
    # The design classes are fixed while the process runs, so the schema is built once.
    return StudyCreate.model_json_schema()


@router.get("/schema")
def schema() -> dict[str, Any]:
    """Return the JSON schema of a `POST /api/studies` body, with ranges, defaults and help."""
    return _study_schema()
