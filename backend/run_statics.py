"""The parts of a run's public view that do not change once stored, parsed once per process.

A run's design is fixed when the run is made. Its training histograms are fixed
when first stored: a run claimed again stores the same ones, because its
training set follows from its design. Without this cache, every request for a
study page of 100 runs would parse and validate 100 designs and 200 histograms.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from backend.schemas import HistogramPublic, histograms_public
from biaslab.store.models import Run
from biaslab.store.studies import run_statics_rows, runs_with_training_histograms

# An estimate: about 5 KB per run with two features, so about 20 MB when full.
MAX_RUNS = 4096


@dataclass(frozen=True)
class RunStatics:
    """A run's number of training steps and its training histograms (None until stored)."""

    steps: int
    training_histograms: dict[str, HistogramPublic] | None
    # The run's creation time: SQLite gives a new run the id of a deleted one, so an
    # entry counts only for the run made at the same moment.
    created_at: datetime


class RunStaticsCache:
    """The statics of the runs read most recently, shared by the API's threads."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self._max_runs = max_runs
        self._entries: OrderedDict[int, RunStatics] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, runs: Sequence[Run]) -> dict[int, RunStatics]:
        """Return the statics of each run by id, reading only those not cached yet.

        One query per call checks which runs have training histograms now, so a
        run whose histograms were cleared (claimed again) or newly stored is
        never shown stale.
        """
        run_ids = [run.id for run in runs]
        stored = runs_with_training_histograms(session, run_ids)
        with self._lock:
            cached = {run.id: self._entries.get(run.id) for run in runs}
        for run in runs:
            entry = cached[run.id]
            if entry is not None and entry.created_at != run.created_at:
                cached[run.id] = None
        missing = [
            run_id
            for run_id, entry in cached.items()
            if entry is None or (run_id in stored and entry.training_histograms is None)
        ]
        fresh = {
            run_id: RunStatics(
                steps=int(spec["training"]["steps"]),
                training_histograms=histograms_public(histograms),
                created_at=created_at,
            )
            for run_id, spec, histograms, created_at in run_statics_rows(session, missing)
        }
        with self._lock:
            for run_id, entry in fresh.items():
                self._entries[run_id] = entry
            for run_id in run_ids:
                if run_id in self._entries:
                    self._entries.move_to_end(run_id)
            while len(self._entries) > self._max_runs:
                self._entries.popitem(last=False)

        result = {}
        for run_id in run_ids:
            found = fresh.get(run_id) or cached[run_id]
            if found is None:
                continue  # deleted since the study was read
            if run_id not in stored and found.training_histograms is not None:
                found = replace(found, training_histograms=None)
            result[run_id] = found
        return result
