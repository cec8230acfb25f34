"""The audit log: one row per state-changing API request, written by the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from biaslab.store.models import AuditEntry

PATH_MAX_LENGTH = 500
ADDRESS_MAX_LENGTH = 64
USER_NAME_MAX_LENGTH = 64


@dataclass(frozen=True)
class AuditRecord:
    """One state-changing request and its outcome; `user_id` is None when no user was identified."""

    user_id: int | None
    method: str
    path: str
    status: int
    study_id: int | None = None
    run_id: int | None = None
    client_address: str | None = None
    # The user name of a failed sign-in.
    attempted_user: str | None = None


def record_request(session: Session, record: AuditRecord) -> AuditEntry:
    entry = AuditEntry(
        user_id=record.user_id,
        method=record.method[:10],
        path=record.path[:PATH_MAX_LENGTH],
        status=record.status,
        study_id=record.study_id,
        run_id=record.run_id,
        client_address=(record.client_address or None)
        and record.client_address[:ADDRESS_MAX_LENGTH],
        attempted_user=(record.attempted_user or None)
        and record.attempted_user[:USER_NAME_MAX_LENGTH],
    )
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    limit: int,
    offset: int,
    *,
    user_id: int | None = None,
    study_id: int | None = None,
) -> tuple[Sequence[AuditEntry], int]:
    """Return one page of entries, newest first, optionally of one user or study, and the total."""
    conditions = []
    if user_id is not None:
        conditions.append(AuditEntry.user_id == user_id)
    if study_id is not None:
        conditions.append(AuditEntry.study_id == study_id)
    total = session.scalar(select(func.count(AuditEntry.id)).where(*conditions)) or 0
    entries = session.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return entries, total
