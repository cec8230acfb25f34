"""Dataset previews for the designer: a grid of training images before anything is trained."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.responses import Response

from biaslab.datasets.dots import render_dots
from biaslab.design import Dataset
from biaslab.images import png_grid

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

PREVIEW_IMAGES = 16
PREVIEW_COLUMNS = 4


@router.post(
    "/preview",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A 4x4 grid of training images."}
    },
)
def preview(
    dataset: Annotated[Dataset, Body()],
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    try:
        batch = render_dots(dataset, PREVIEW_IMAGES, np.random.default_rng(seed))
    except ValueError as error:
        # The renderer rejects designs that cannot be drawn, such as too many dots to place.
        raise HTTPException(status_code=422, detail=str(error)) from error
    return Response(png_grid(batch.images, PREVIEW_COLUMNS), media_type="image/png")
