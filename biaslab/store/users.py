"""Users, their API tokens and browser sign-in sessions, and who may see which study.

Every function works in the caller's session and leaves the commit to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, false, func, or_, select, true, update
from sqlalchemy.orm import Session

from biaslab.auth import (
    check_password_rules,
    digest_secret,
    hash_password,
    issue_api_token,
    issue_session_secret,
    new_csrf_token,
    password_needs_rehash,
    verify_password,
)
from biaslab.store.models import ApiToken, SignInSession, Study, User, utcnow

USER_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
USER_NAME_RULE = (
    "use 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
)
TOKEN_NAME_MAX_LENGTH = 100
# A token's last-used time is written at most this often, so that a busy client
# does not turn each of its reads into a write.
TOKEN_TOUCH_SECONDS = 60.0


class UserError(ValueError):
    """A request about users that cannot be carried out; the message gives the reason."""


@dataclass(frozen=True)
class NewToken:
    """A token row and its secret, which is shown once and never stored."""

    token: ApiToken
    secret: str


@dataclass(frozen=True)
class NewSession:
    """A sign-in row and the secret that goes into the browser's cookie."""

    session: SignInSession
    secret: str


def check_user_name(name: str) -> None:
    """Raise UserError unless `name` is an allowed user name."""
    if not USER_NAME_PATTERN.fullmatch(name):
        raise UserError(f"user name {name!r} is invalid: {USER_NAME_RULE}")


def create_user(
    session: Session, name: str, password: str | None, *, is_admin: bool = False
) -> User:
    """Add a user; with `password` None the user can only use API tokens.

    Raises UserError for an invalid or taken name and InvalidPassword for a
    password that breaks the length rules.
    """
    check_user_name(name)
    if password is not None:
        check_password_rules(password)
    if get_user(session, name) is not None:
        raise UserError(f"user {name!r} already exists")
    user = User(
        name=name,
        password_hash=None if password is None else hash_password(password),
        is_admin=is_admin,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()


def require_user(session: Session, name: str) -> User:
    """Return the user called `name`; raise UserError when there is none."""
    user = get_user(session, name)
    if user is None:
        raise UserError(f"user {name!r} not found; `biaslab users list` shows the users")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def count_enabled_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id)).where(User.disabled == false())) or 0


def disable_user(session: Session, user: User) -> None:
    """Disable `user` and end their sign-ins; their tokens stop working while disabled."""
    user.disabled = True
    session.execute(delete(SignInSession).where(SignInSession.user_id == user.id))


def check_password(session: Session, name: str, password: str) -> User | None:
    """Return the enabled user called `name` when `password` is theirs, else None.

    A user name that does not exist costs the same hashing time as a wrong
    password. A hash made with older parameters is replaced by a new one.
    """
    user = get_user(session, name)
    stored = user.password_hash if user is not None else None
    if not verify_password(stored, password):
        return None
    # verify_password is False for a missing hash, so both are set here.
    assert user is not None and stored is not None
    if user.disabled:
        return None
    if password_needs_rehash(stored):
        user.password_hash = hash_password(password)
    return user


# ---- API tokens ----


def issue_token(session: Session, user: User, name: str) -> NewToken:
    """Add a new API token for `user` and return it with its secret."""
    name = name.strip()
    if not name or len(name) > TOKEN_NAME_MAX_LENGTH:
        raise UserError(
            f"token name {name!r} is invalid: use 1 to {TOKEN_NAME_MAX_LENGTH} characters"
        )
    issued = issue_api_token()
    token = ApiToken(
        user_id=user.id,
        name=name,
        display_prefix=issued.display_prefix,
        token_digest=issued.digest,
    )
    session.add(token)
    session.flush()
    return NewToken(token=token, secret=issued.secret)


def list_tokens(session: Session, user_id: int) -> Sequence[ApiToken]:
    """Return the user's tokens, newest first, revoked ones included."""
    return session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    ).all()


def revoke_token(session: Session, user_id: int, token_id: int) -> ApiToken | None:
    """Revoke the user's token `token_id`; return None when the user has no such token.

    Revoking a revoked token keeps its first revocation time.
    """
    token = session.scalars(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
    ).one_or_none()
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def user_for_token(session: Session, secret: str, now: datetime | None = None) -> User | None:
    """Return the enabled user whose unrevoked token has this secret, else None.

    Updates the token's last-used time when it is older than TOKEN_TOUCH_SECONDS.
    """
    now = now or utcnow()
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_digest == digest_secret(secret),
            ApiToken.revoked_at.is_(None),
            User.disabled == false(),
        )
    ).one_or_none()
    if row is None:
        return None
    token, user = row
    stale_before = now - timedelta(seconds=TOKEN_TOUCH_SECONDS)
    # One guarded UPDATE, so that concurrent requests with one token write it once.
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale_before),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return user


# ---- Browser sign-in sessions ----


def start_session(session: Session, user: User, lifetime: timedelta) -> NewSession:
    """Add a sign-in for `user` that ends after `lifetime`; expired ones are deleted first."""
    now = utcnow()
    session.execute(delete(SignInSession).where(SignInSession.expires_at < now))
    issued = issue_session_secret()
    row = SignInSession(
        user_id=user.id,
        secret_digest=issued.digest,
        csrf_token=new_csrf_token(),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return NewSession(session=row, secret=issued.secret)


def find_session(
    session: Session, secret: str, now: datetime | None = None
) -> tuple[SignInSession, User] | None:
    """Return the live sign-in with this cookie secret and its enabled user, else None."""
    row = session.execute(
        select(SignInSession, User)
        .join(User, User.id == SignInSession.user_id)
        .where(
            SignInSession.secret_digest == digest_secret(secret),
            SignInSession.expires_at > (now or utcnow()),
            User.disabled == false(),
        )
    ).one_or_none()
    if row is None:
        return None
    sign_in, user = row
    return sign_in, user


def end_session(session: Session, secret: str) -> bool:
    """Delete the sign-in with this cookie secret; return False when there was none."""
    ended = session.execute(
        delete(SignInSession)
        .where(SignInSession.secret_digest == digest_secret(secret))
        .returning(SignInSession.id)
        .execution_options(synchronize_session=False)
    ).all()
    return bool(ended)


# ---- Study visibility ----


def visible_studies(user_id: int | None, is_admin: bool) -> ColumnElement[bool]:
    """Return a condition on Study that admits the studies this user may read.

    Admins read every study; others read every study that is not private, and
    their own private ones. `user_id` None (authentication off) reads all.
    """
    if user_id is None or is_admin:
        return true()
    return or_(Study.private == false(), Study.owner_id == user_id)
