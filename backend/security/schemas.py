"""Request and response schemas of sign-in, tokens, users and the audit log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from backend.schemas import UtcDatetime
from biaslab.auth import MAX_PASSWORD_LENGTH
from biaslab.store.models import ApiToken, AuditEntry, User
from biaslab.store.users import TOKEN_NAME_MAX_LENGTH


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class UserPublic(BaseModel):
    name: str
    is_admin: bool
    disabled: bool
    created_at: UtcDatetime

    @classmethod
    def from_row(cls, user: User) -> UserPublic:
        return cls(
            name=user.name,
            is_admin=user.is_admin,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class UsersPublic(BaseModel):
    users: list[UserPublic]


class SessionPublic(BaseModel):
    """The sign-in state: whether the lab needs one, who is signed in, and their CSRF token."""

    auth: Literal["off", "required"]
    user: UserPublic | None = None
    # Send it in the X-CSRF-Token header with every state-changing request made with the cookie.
    csrf_token: str | None = None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=TOKEN_NAME_MAX_LENGTH),
        Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
    ]


class TokenPublic(BaseModel):
    id: int
    name: str
    # The first characters of the token, to tell tokens apart; the rest is never shown again.
    display_prefix: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None

    @classmethod
    def from_row(cls, token: ApiToken) -> TokenPublic:
        return cls(
            id=token.id,
            name=token.name,
            display_prefix=token.display_prefix,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class TokenCreated(TokenPublic):
    # The whole token, in this response only.
    token: str


class TokensPublic(BaseModel):
    tokens: list[TokenPublic]


class AuditEntryPublic(BaseModel):
    id: int
    user: str | None
    method: str
    path: str
    study_id: int | None
    run_id: int | None
    status: int
    client_address: str | None
    # The user name that a failed sign-in tried; null for other entries.
    attempted_user: str | None
    created_at: UtcDatetime

    @classmethod
    def from_row(cls, entry: AuditEntry) -> AuditEntryPublic:
        return cls(
            id=entry.id,
            user=entry.user.name if entry.user else None,
            method=entry.method,
            path=entry.path,
            study_id=entry.study_id,
            run_id=entry.run_id,
            status=entry.status,
            client_address=entry.client_address,
            attempted_user=entry.attempted_user,
            created_at=entry.created_at,
        )


class AuditLogPublic(BaseModel):
    entries: list[AuditEntryPublic]
    count: int
