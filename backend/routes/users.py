"""The lab's users, for admins; users are created and disabled with `biaslab users`."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import SessionDep
from backend.security.identity import AdminUser
from backend.security.schemas import UserPublic, UsersPublic
from biaslab.store.users import list_users

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("")
def list_all(_admin: AdminUser, session: SessionDep) -> UsersPublic:
    return UsersPublic(users=[UserPublic.from_row(user) for user in list_users(session)])
