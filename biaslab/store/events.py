"""Events: the rows the SSE stream sends to browsers, in id order."""

from __future__ import annotations

from sqlalchemy.orm import Session

from biaslab.store.models import Event, EventKind, Run


def record_event(
    session: Session, run: Run, kind: EventKind, snapshot_id: int | None = None
) -> None:
    """Add an event for `run` to the session; it is committed with the change it reports."""
    session.add(Event(study_id=run.study_id, run_id=run.id, kind=kind, snapshot_id=snapshot_id))
