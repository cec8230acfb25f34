"""The audit log of state-changing requests, for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from backend.deps import MAX_INTEGER, SessionDep
from backend.security.identity import AdminUser
from backend.security.schemas import AuditEntryPublic, AuditLogPublic
from biaslab.store.audit import list_entries
from biaslab.store.users import get_user

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("")
def read(
    _admin: AdminUser,
    session: SessionDep,
    user: Annotated[
        str | None, Query(max_length=64, description="Entries of this user only.")
    ] = None,
    study_id: Annotated[
        int | None, Query(ge=1, le=MAX_INTEGER, description="Entries about this study only.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INTEGER)] = 0,
) -> AuditLogPublic:
    """Return one page of the audit log, newest first."""
    user_id = None
    if user is not None:
        row = get_user(session, user)
        if row is None:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND, detail=f"user {user!r} not found"
            )
        user_id = row.id
    entries, total = list_entries(session, limit, offset, user_id=user_id, study_id=study_id)
    return AuditLogPublic(
        entries=[AuditEntryPublic.from_row(entry) for entry in entries], count=total
    )
