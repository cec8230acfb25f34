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
from biaslab.design.study import RunSpec, StudyCreate, Training, expand, expand_runs
from biaslab.design.sweep import (
    MAX_RUNS_PER_STUDY,
    ExpandedRun,
    SweepAxis,
    SweepPoint,
    design_points,
    run_count,
    varying_fields,
)

__all__ = [
    "ARCHITECTURES",
    "DATASET_FAMILIES",
    "MAX_DOTS",
    "MAX_RUNS_PER_STUDY",
    "MODEL_KINDS",
    "Architecture",
    "Dataset",
    "DdpmModel",
    "DotsDataset",
    "ExpandedRun",
    "Model",
    "PixelCnnModel",
    "RunSpec",
    "Strict",
    "StudyCreate",
    "SweepAxis",
    "SweepPoint",
    "Training",
    "VaeModel",
    "WganGpModel",
    "design_points",
    "expand",
    "expand_runs",
    "run_count",
    "varying_fields",
]
