"""The number of runs a draft design makes, for the designer to show before it is submitted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from biaslab.design import MAX_RUNS_PER_STUDY, run_count

router = APIRouter(prefix="/api/studies", tags=["studies"])


class RunCountPublic(BaseModel):
    runs: int
    # The maximum number of runs in one study; a design above it is rejected with 422.
    max_runs: int
    within_limit: bool


@router.post("/run-count")
def count_runs(draft: dict[str, Any]) -> RunCountPublic:
    """Return how many runs a design makes; only its `sweep` is read, so a draft may be partial."""
    try:
        runs = run_count(draft)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", "sweep", *item["loc"])} for item in error.errors()]
        ) from error
    return RunCountPublic(
        runs=runs, max_runs=MAX_RUNS_PER_STUDY, within_limit=runs <= MAX_RUNS_PER_STUDY
    )
