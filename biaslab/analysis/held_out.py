"""Shapes: how many held-out shape-colour combinations the generated samples show.

The shapes family scores each held-out combination 1.0 when at least one
generated sample shows it and 0.0 otherwise, under names that start with
HELD_OUT_PREFIX. The share of held-out combinations generated is their mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

HELD_OUT_PREFIX = "held_out/"


def held_out_generated_share(scores: Mapping[str, float | None]) -> float:
    """Return the share of held-out combinations that some sample shows; NaN if none is held out."""
    flags = [
        value
        for name, value in scores.items()
        if name.startswith(HELD_OUT_PREFIX) and value is not None
    ]
    if not flags:
        return math.nan
    return float(sum(flags) / len(flags))
