"""Identification of a request's user: an API token, or a sign-in cookie checked against CSRF.

With `Settings.auth` "off" (the one-person lab on loopback) no user is identified
and every request is allowed; the dependencies then return None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status

from biaslab.auth import secrets_match
from biaslab.settings import Settings
from biaslab.store.db import session_scope
from biaslab.store.models import User
from biaslab.store.users import find_session, user_for_token

SESSION_COOKIE = "biaslab_session"
# Readable by the pages' scripts, which send it back in CSRF_HEADER.
CSRF_COOKIE = "biaslab_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# API routes that respond without credentials: reading the sign-in state, and signing in.
PUBLIC_API_ROUTES = frozenset({("GET", "/api/session"), ("POST", "/api/session")})


@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request, and how they proved it."""

    user_id: int
    name: str
    is_admin: bool
    via: Literal["token", "session"]


def auth_required(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.auth == "required"


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="biaslab"'},
    )


def _principal(user: User, via: Literal["token", "session"]) -> Principal:
    return Principal(user_id=user.id, name=user.name, is_admin=user.is_admin, via=via)


def _from_token(request: Request, authorization: str) -> Principal:
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise unauthorized(
            "the Authorization header is invalid: send 'Authorization: Bearer <token>'"
        )
    with session_scope(request.app.state.sessions) as session:
        user = user_for_token(session, secret)
        if user is None:
            raise unauthorized("the API token is invalid or revoked, or its user is disabled")
        return _principal(user, "token")


def _from_cookie(request: Request, cookie: str) -> Principal:
    with session_scope(request.app.state.sessions) as session:
        found = find_session(session, cookie)
        if found is None:
            raise unauthorized("your sign-in has expired or ended; sign in again")
        sign_in, user = found
        principal = _principal(user, "session")
        # The audit log names the user even when the CSRF check below fails.
        request.state.principal = principal
        if request.method not in SAFE_METHODS:
            sent_token = request.headers.get(CSRF_HEADER, "")
            if not sent_token or not secrets_match(sign_in.csrf_token, sent_token):
                raise HTTPException(
                    status_code=status.HTTP_403_FORBIDDEN,
                    detail=(
                        f"missing or invalid {CSRF_HEADER} header: a {request.method} request "
                        "signed in with the session cookie must send the sign-in's CSRF token "
                        f"(the {CSRF_COOKIE} cookie)"
                    ),
                )
        return principal


def identify(request: Request) -> Principal | None:
    """Return the request's user, or None when it carries no credentials.

    Raises 401 for bad credentials, and 400 for more than one Authorization header.

    An Authorization header takes precedence over the sign-in cookie, and
    requests that use it need no CSRF token, because a browser never adds it by itself.
    """
    sent = request.headers.getlist("Authorization")
    if len(sent) > 1:
        # Authorization contains one credential. With two, such as a proxy's and a
        # client's, either choice could act as the wrong user.
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail=f"the request has {len(sent)} Authorization headers; send exactly one",
        )
    authorization = sent[0] if sent else None
    if authorization is not None:
        principal = _from_token(request, authorization)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        principal = _from_cookie(request, cookie)
    request.state.principal = principal
    return principal


def authenticate(request: Request) -> Principal | None:
    """Return the request's user; None when authentication is off or the route is public.

    Raises 401 when authentication is on and the request has no valid credentials,
    and 403 when a cookie-authenticated state-changing request lacks the CSRF token.
    Every route of the app depends on this, so an API route added later is
    protected without declaring it. Pages and static files need no sign-in,
    because every piece of data they show comes from the API.
    """
    if not auth_required(request):
        return None
    path = request.url.path
    if not path.startswith("/api/") or (request.method, path) in PUBLIC_API_ROUTES:
        return None
    principal = identify(request)
    if principal is None:
        raise unauthorized(
            "authentication required: sign in at /signin, or send 'Authorization: Bearer <token>' "
            "with an API token from `biaslab users token NAME`"
        )
    return principal


def require_signed_in(
    request: Request, user: Annotated[Principal | None, Depends(authenticate)]
) -> Principal:
    """Return the signed-in user; routes about one's own account need one."""
    if user is None:
        if not auth_required(request):
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT,
                detail=(
                    "authentication is off on this lab, so there are no users; "
                    "start it with `biaslab serve --auth` to use accounts"
                ),
            )
        raise unauthorized("authentication required")
    return user


CurrentUser = Annotated[Principal | None, Depends(authenticate)]
SignedInUser = Annotated[Principal, Depends(require_signed_in)]


def require_admin(request: Request, user: SignedInUser) -> Principal:
    if not user.is_admin:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=(
                f"user {user.name!r} is not an admin; only admins can use "
                f"{request.method} {request.url.path}"
            ),
        )
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]
