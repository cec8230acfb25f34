"""Presets: named model and training settings that the designer fills in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from biaslab.presets import PRESETS

router = APIRouter(prefix="/api/presets", tags=["presets"])


class PresetPublic(BaseModel):
    """One preset: the model design and training recipe it fills in."""

    description: str
    model: dict[str, Any]
    training: dict[str, Any]


@router.get("")
def list_presets() -> dict[str, dict[str, PresetPublic]]:
    """Return every preset, by model kind and then preset name."""
    return {
        kind: {
            name: PresetPublic(
                description=preset.description,
                model=preset.model.model_dump(mode="json"),
                training=preset.training.model_dump(mode="json"),
            )
            for name, preset in presets.items()
        }
        for kind, presets in PRESETS.items()
    }
