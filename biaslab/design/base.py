"""The base class of every design model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A design part that rejects unknown fields and non-finite numbers."""

    # NaN and infinity would slip past range checks and break JSON responses.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
