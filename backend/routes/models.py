"""Model facts for the designer: the parameter count of each architecture."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from biaslab.design import ARCHITECTURES, Model, Strict
from biaslab.models import parameter_count

router = APIRouter(prefix="/api/models", tags=["models"])


class ParameterCountQuery(Strict):
    """A model design and the image size its networks are built for."""

    model: Model
    image_size: Literal[32, 64] = 32


class ParameterCounts(BaseModel):
    """Trainable parameters of a model design under each architecture."""

    kind: str
    image_size: int
    parameters: dict[str, int]


@router.post("/parameters")
def parameters(query: ParameterCountQuery) -> ParameterCounts:
    """Count the trainable parameters of the design under every architecture."""
    counts: dict[str, int] = {}
    for architecture in ARCHITECTURES:
        variant = query.model.model_copy(update={"architecture": architecture})
        try:
            counts[architecture] = parameter_count(variant, query.image_size)
        except ValueError as error:
            # parameter_count names what it cannot count, such as a kind without networks.
            raise HTTPException(
                status_code=422, detail=[{"field": "model", "message": f"model: {error}"}]
            ) from error
    return ParameterCounts(kind=query.model.kind, image_size=query.image_size, parameters=counts)
