"""The analysis of a whole study: every section that applies to its runs, as JSON.

`analyze_study` takes plain data (`RunResult`), not store rows, so the API, the
study bundle export and tests call it alike. Runs without a snapshot are listed
under `pending` and left out of every section. A section that no run fits is
an empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from biaslab.analysis.bootstrap import method_json
from biaslab.analysis.combinations import TARGET_PRECISION
from biaslab.analysis.distances import KL_EPSILON
from biaslab.analysis.results import RunResult
from biaslab.analysis.study_coverage import combinations_section, shapes_section
from biaslab.analysis.study_distances import conditions_section, runs_section
from biaslab.analysis.study_modes import modes_section
from biaslab.analysis.study_numerosity import numerosity_section


def analyze_study(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Return all analyses that apply to the runs, ready for JSON (NaN becomes null)."""
    return {
        "methods": {
            "intervals": method_json(),
            "kl_smoothing": {
                "epsilon": KL_EPSILON,
                "rule": "add epsilon to every bin's probability, then renormalize",
                "unit": "nats",
            },
            "distributions": "recognized samples only; the unrecognized share is reported apart",
            "target_precision": TARGET_PRECISION,
        },
        "pending": [run.index for run in runs if not run.has_snapshot],
        "runs": runs_section(runs),
        "conditions": conditions_section(runs),
        "numerosity": numerosity_section(runs),
        "modes": modes_section(runs),
        "combinations": combinations_section(runs),
        "shapes": shapes_section(runs),
    }
