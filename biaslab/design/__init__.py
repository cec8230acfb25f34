"""Study designs: what a researcher submits, with the limits of every field."""

from biaslab.design.base import Strict
from biaslab.design.datasets import DATASET_FAMILIES, MAX_DOTS, Dataset, DotsDataset
from biaslab.design.models import (
    ARCHITECTURES,
    MODEL_KINDS,
    Architecture,
    DdpmModel,
    Model,
    PixelCnnModel,
    VaeModel,
    WganGpModel,
)
from biaslab.design.study import RunSpec, StudyCreate, Training, expand

__all__ = [
    "ARCHITECTURES",
    "DATASET_FAMILIES",
    "MAX_DOTS",
    "MODEL_KINDS",
    "Architecture",
    "Dataset",
    "DdpmModel",
    "DotsDataset",
    "Model",
    "PixelCnnModel",
    "RunSpec",
    "Strict",
    "StudyCreate",
    "Training",
    "VaeModel",
    "WganGpModel",
    "expand",
]
