"""Probe samples made elsewhere with a dataset family: pick the design, read every feature.

Uploaded samples have no run, so the design that the probe reads comes from a
study (`study_id`) or from the probe's own settings:

- a family in STUDY_FAMILIES compares samples with a study's training set
  (training cells, held-out pairs), so it needs a study;
- dots without a study need only the dot radius;
- any other family without a study uses its design's defaults, and needs a
  study when its design has required fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import Dataset, DotsDataset
from biaslab.design.base import Strict
from biaslab.families import FAMILIES, family_for
from biaslab.families.base import Feature, FeatureValues
from biaslab.probes.samples import DEFAULT_DOT_RADIUS, InvalidSamples, check_dot_radius_range

# Families whose probe results mean something only against a study's training set.
STUDY_FAMILIES = frozenset({"combinations", "shapes"})
# Images are converted to float and probed in chunks of about this many pixels
# (48 MiB as float32 RGB), so a full upload is never held as floats at once.
PROBE_CHUNK_PIXELS = 2**22

_DATASET = TypeAdapter(Dataset)


@dataclass(frozen=True)
class StudyDataset:
    """The dataset design stored with a study, as JSON."""

    study_id: int
    dataset: dict[str, Any]


@dataclass(frozen=True)
class ProbeOutcome:
    """Every feature of a sample set: per image, as histograms, and the family's scores."""

    family: str
    features: list[Feature]
    histograms: dict[str, FeatureHistogram]
    # Summary numbers such as precision and recall; NaN where undefined.
    scores: dict[str, float]
    # One JSON object of feature values per image, in input order; null when unrecognized.
    images: list[dict[str, Any]]


def probe_design(
    family: str | None, study: StudyDataset | None, dot_radius: float | None
) -> Strict:
    """Return the design to probe with, or raise InvalidSamples naming the input at fault.

    `family` defaults to the study's family, and to dots without a study.
    `dot_radius` applies to dots without a study; a study's design sets its own.
    """
    if study is not None:
        return _study_design(family, study, dot_radius)

    name = family or "dots"
    if name not in FAMILIES:
        raise InvalidSamples(
            f"{name!r} is not a dataset family; use one of {', '.join(sorted(FAMILIES))}",
            field="family",
        )
    if name in STUDY_FAMILIES:
        raise InvalidSamples(
            f"missing: {name} samples are compared with a study's training set; "
            f"send the study_id of a {name} study",
            field="study_id",
        )
    if dot_radius is not None and name != "dots":
        raise InvalidSamples(
            f"{dot_radius:g} is not used: dot_radius applies to the dots family only",
            field="dot_radius",
        )
    if name == "dots":
        # The count probe reads only dot_radius. The fields that describe training
        # images (counts, noise, image size) do not apply to uploaded samples.
        radius = DEFAULT_DOT_RADIUS if dot_radius is None else dot_radius
        check_dot_radius_range(radius)
        return DotsDataset.model_construct(dot_radius=radius)
    try:
        return _DATASET.validate_python({"family": name})
    except ValidationError as error:
        required = sorted({str(item["loc"][-1]) for item in error.errors()})
        raise InvalidSamples(
            f"missing: a {name} design has required fields ({', '.join(required)}), so "
            f"probing {name} samples needs the study_id of a {name} study",
            field="study_id",
        ) from error


def _study_design(family: str | None, study: StudyDataset, dot_radius: float | None) -> Strict:
    study_family = study.dataset.get("family")
    if family is not None and family != study_family:
        raise InvalidSamples(
            f"{family!r} does not match study {study.study_id}, whose dataset family is "
            f"{study_family!r}; send {study_family!r} or leave family out",
            field="family",
        )
    if dot_radius is not None:
        raise InvalidSamples(
            f"{dot_radius:g} is not used: the design of study {study.study_id} sets the dot "
            "radius, so leave dot_radius out when sending study_id",
            field="dot_radius",
        )
    try:
        return _DATASET.validate_python(study.dataset)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidSamples(
            f"study {study.study_id} has a dataset design that is no longer valid "
            f"({where}: {first['msg']}), so it cannot be probed against",
            field="study_id",
        ) from error


def probe_images(images: np.ndarray, design: Strict) -> ProbeOutcome:
    """Read every feature of (N, H, W, 3) uint8 or float images in [0, 1] with `design`'s family.

    Raises InvalidSamples, or ValueError from the family's probe, for images it cannot read.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise InvalidSamples(f"expected a non-empty (N, H, W, 3) batch, got shape {images.shape}")
    family = family_for(design)
    height, width = images.shape[1:3]
    chunk = max(1, PROBE_CHUNK_PIXELS // (height * width))
    parts: list[FeatureValues] = []
    for start in range(0, images.shape[0], chunk):
        pixels = images[start : start + chunk]
        if pixels.dtype == np.uint8:
            # Families probe float images in [0, 1].
            pixels = pixels.astype(np.float32) / np.float32(255)
        parts.append(family.probe(pixels, design))
    values = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return ProbeOutcome(
        family=family.name,
        features=family.features(design),
        histograms=family.histograms(design, values),
        scores=family.scores(design, values),
        images=family.describe(design, values),
    )
