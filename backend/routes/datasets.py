"""Dataset previews for the designer: training images and feature histograms before training."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel

from backend.figures import feature_figure
from backend.schemas import HistogramPublic
from biaslab.design import Dataset
from biaslab.families import FeatureValues, family_for
from biaslab.images import png_grid

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

PREVIEW_IMAGES = 16
PREVIEW_COLUMNS = 4
# Images rendered for the training histograms: enough for smooth shares, and
# about 0.2 s for 32x32 dots on 2 CPU cores.
HISTOGRAM_IMAGES = 5000
# Rendered this many at a time, so the images are never all held in memory.
HISTOGRAM_CHUNK = 1000

SeedQuery = Annotated[int, Query(ge=0, le=2**31 - 1)]


class TrainingFeaturePublic(BaseModel):
    """One training feature of a design: its histogram and a chart of it."""

    name: str
    title: str
    histogram: HistogramPublic
    figure: dict[str, object]


class DatasetHistogramsPublic(BaseModel):
    family: str
    n_images: int
    features: list[TrainingFeaturePublic]
    # The training cells ({size, x, y, red} for combinations) in the order of the
    # `cell` bins; null for a family that does not draw from listed cells.
    cells: list[dict[str, int]] | None = None


@router.post(
    "/preview",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A 4x4 grid of training images."}
    },
)
def preview(dataset: Annotated[Dataset, Body()], seed: SeedQuery = 0) -> Response:
    family = family_for(dataset)
    try:
        batch = family.render(dataset, PREVIEW_IMAGES, np.random.default_rng(seed))
    except ValueError as error:
        # The renderer rejects designs that cannot be drawn, such as too many dots to place.
        raise HTTPException(status_code=422, detail=str(error)) from error
    return Response(png_grid(batch.images, PREVIEW_COLUMNS), media_type="image/png")


@router.post("/histograms")
def histograms(dataset: Annotated[Dataset, Body()], seed: SeedQuery = 0) -> DatasetHistogramsPublic:
    """Histogram the true features of freshly rendered training images of a design.

    A design with a fixed training set (`training_images`) is histogrammed from
    fresh draws of the same distribution, not from the set a run would draw.
    """
    family = family_for(dataset)
    rng = np.random.default_rng(seed)
    chunks: list[FeatureValues] = []
    try:
        for start in range(0, HISTOGRAM_IMAGES, HISTOGRAM_CHUNK):
            size = min(HISTOGRAM_CHUNK, HISTOGRAM_IMAGES - start)
            chunks.append(family.render(dataset, size, rng).features)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    values = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
    by_name = family.histograms(dataset, values)
    features = []
    for feature in family.features(dataset):
        histogram = by_name[feature.name]
        features.append(
            TrainingFeaturePublic(
                name=feature.name,
                title=feature.title,
                histogram=HistogramPublic(
                    **histogram.model_dump(), unrecognized_share=histogram.unrecognized_share
                ),
                figure=feature_figure(feature.title, histogram, None, None),
            )
        )
    return DatasetHistogramsPublic(
        family=family.name,
        n_images=HISTOGRAM_IMAGES,
        features=features,
        cells=family.training_cells(dataset),
    )
