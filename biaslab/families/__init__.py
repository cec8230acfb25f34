"""The registry of dataset families: every family by its design's `family` name.

A new family registers here with one import and one entry in FAMILIES.
"""

from __future__ import annotations

from typing import Any

from biaslab.design.base import Strict
from biaslab.families.base import DatasetFamily, Feature, FeatureValues, RenderedBatch
from biaslab.families.combinations import CombinationsFamily
from biaslab.families.dots import DotsFamily
from biaslab.families.pie import PieFamily
from biaslab.families.shapes import ShapesFamily

FAMILIES: dict[str, DatasetFamily[Any]] = {
    DotsFamily.name: DotsFamily(),
    ShapesFamily.name: ShapesFamily(),
    PieFamily.name: PieFamily(),
    CombinationsFamily.name: CombinationsFamily(),
}


def family_for(design: Strict) -> DatasetFamily[Any]:
    """Return the family that renders and probes `design`, chosen by its `family` field."""
    name = getattr(design, "family", None)
    family = FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"dataset family {name!r} is not registered; registered: {known}")
    return family


__all__ = [
    "FAMILIES",
    "DatasetFamily",
    "Feature",
    "FeatureValues",
    "RenderedBatch",
    "family_for",
]
