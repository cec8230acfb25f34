"""The analyses of a study over REST, and their figures for the study page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from backend.deps import MAX_INTEGER, SessionDep, StudyDep
from backend.figures_analysis import analysis_figures
from biaslab.analysis.study import analyze_study
from biaslab.store.models import Study
from biaslab.store.results import study_results

router = APIRouter(prefix="/api/studies", tags=["analysis"])

StepQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_INTEGER,
        description="Analyse each run's newest snapshot at or before this step; "
        "the newest snapshot when unset.",
    ),
]


def study_analysis(session: Session, study: Study, step: int | None) -> dict[str, Any]:
    """Return the analyses of the study's runs at `step`, with the step and the runs left out."""
    results = study_results(session, study, step)
    return {
        "study_id": study.id,
        "step": step,
        # Runs whose stored spec no longer validates, by index, with the reason.
        "invalid_runs": {str(index): reason for index, reason in results.invalid.items()},
        **analyze_study(results.runs),
    }


@router.get("/{study_id}/analysis")
def analysis(study: StudyDep, session: SessionDep, step: StepQuery = None) -> dict[str, Any]:
    """Return the analyses that apply to the study's runs, with bootstrap intervals over seeds."""
    return study_analysis(session, study, step)


@router.get("/{study_id}/analysis/figures")
def analysis_with_figures(
    study: StudyDep, session: SessionDep, step: StepQuery = None
) -> dict[str, Any]:
    """Return the analyses and a Plotly figure per modes entry, count series and curve."""
    result = study_analysis(session, study, step)
    return {"analysis": result, "figures": analysis_figures(result)}
