"""Templates: one-click studies that reproduce published findings, with quick and full presets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from backend.deps import QueueDep, SessionDep
from backend.routes.studies import create as create_study_route
from backend.schemas import StudyCreated
from backend.security.identity import CurrentUser
from biaslab.design import MAX_RUNS_PER_STUDY
from biaslab.templates import TEMPLATES, TemplatePreset

router = APIRouter(prefix="/api/templates", tags=["templates"])


class TemplatePresetPublic(BaseModel):
    name: str
    description: str
    models: list[str]
    seeds: list[int]
    runs: int


class TemplatePublic(BaseModel):
    name: str
    title: str
    # The finding the template reproduces, in a sentence or two.
    shows: str
    presets: list[TemplatePresetPublic]


class TemplatesPublic(BaseModel):
    templates: list[TemplatePublic]
    # The maximum number of runs in one study.
    max_runs: int


class TemplateStudyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: TemplatePreset = Field(
        default="quick",
        description="quick: 32x32 and short runs for a CPU; full: 64x64 and the paper's runs.",
    )


@router.get("")
def list_templates() -> TemplatesPublic:
    """List every template with what it shows and the runs each preset makes."""
    return TemplatesPublic(
        templates=[
            TemplatePublic.model_validate(template.to_json()) for template in TEMPLATES.values()
        ],
        max_runs=MAX_RUNS_PER_STUDY,
    )


@router.post("/{name}/studies", status_code=status.HTTP_201_CREATED)
def create_template_study(
    name: Annotated[str, Path(max_length=100)],
    body: TemplateStudyCreate,
    session: SessionDep,
    queue: QueueDep,
    user: CurrentUser,
    request: Request,
) -> StudyCreated:
    """Create the template's study with the chosen preset and queue its runs."""
    template = TEMPLATES.get(name)
    if template is None:
        raise RequestValidationError(
            [
                {
                    "type": "literal_error",
                    "loc": ("path", "name"),
                    "msg": "Input should be one of "
                    + ", ".join(repr(known) for known in TEMPLATES),
                    "input": name,
                }
            ]
        )
    return create_study_route(template.study(body.preset), session, queue, user, request)
