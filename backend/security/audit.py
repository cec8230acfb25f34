"""An ASGI middleware that records each state-changing API request in the audit log.

The entry is written when the response starts, before the client receives it,
so a client that reads the audit log after a response finds the entry there.
Requests are recorded only while authentication is on, because without it
no user is identified.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.security.identity import Principal
from biaslab.settings import Settings
from biaslab.store.audit import AuditRecord, record_request
from biaslab.store.db import session_scope

logger = logging.getLogger(__name__)

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POST routes that compute a result and store nothing.
READ_ONLY_PREFIXES = ("/api/datasets/", "/api/models/", "/api/probe")


def note_target(
    request: Request, *, study_id: int | None = None, run_id: int | None = None
) -> None:
    """Remember the study and run a request is about, for its audit entry."""
    if study_id is not None:
        request.state.audit_study_id = study_id
    if run_id is not None:
        request.state.audit_run_id = run_id


def note_attempted_user(request: Request, name: str) -> None:
    """Remember the user name that a sign-in tries, for the audit entry of a failed one."""
    request.state.audit_attempted_user = name


def _is_audited(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] not in AUDITED_METHODS:
        return False
    path: str = scope["path"]
    if not path.startswith("/api/") or path.startswith(READ_ONLY_PREFIXES):
        return False
    settings: Settings = scope["app"].state.settings
    return settings.auth == "required"


def _record_from(scope: Scope, status: int) -> AuditRecord:
    state: dict[str, Any] = scope.get("state", {})
    principal: Principal | None = state.get("principal")
    client = scope.get("client")
    return AuditRecord(
        user_id=principal.user_id if principal else None,
        method=scope["method"],
        path=scope["path"],
        status=status,
        study_id=state.get("audit_study_id"),
        run_id=state.get("audit_run_id"),
        client_address=client[0] if client else None,
        attempted_user=None if principal else state.get("audit_attempted_user"),
    )


def _write(sessions: sessionmaker[Session], record: AuditRecord) -> None:
    try:
        with session_scope(sessions) as session:
            record_request(session, record)
    except SQLAlchemyError:
        # The request itself has been handled, so its response still goes out.
        logger.exception(
            "writing the audit entry of %s %s (status %d) failed",
            record.method,
            record.path,
            record.status,
        )


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_audited(scope):
            await self.app(scope, receive, send)
            return

        sessions = scope["app"].state.sessions
        started = False

        async def send_after_recording(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await run_in_threadpool(_write, sessions, _record_from(scope, message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_after_recording)
        except Exception:
            # An unhandled error becomes a 500 response in an outer middleware.
            if not started:
                await run_in_threadpool(_write, sessions, _record_from(scope, 500))
            raise
