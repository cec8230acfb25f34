"""Browser sign-in: read the sign-in state, sign in with a password, sign out; the sign-in page."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse

from backend.deps import SettingsDep
from backend.routes.pages import FRONTEND_DIR
from backend.security.audit import note_attempted_user
from backend.security.cookies import clear_sign_in_cookies, set_sign_in_cookies
from backend.security.identity import (
    SESSION_COOKIE,
    Principal,
    SignedInUser,
    auth_required,
    identify,
    unauthorized,
)
from backend.security.schemas import SessionPublic, SignIn, UserPublic
from biaslab.auth import SignInThrottle
from biaslab.store.db import session_scope
from biaslab.store.models import User
from biaslab.store.users import check_password, end_session, find_session, start_session

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/session", tags=["session"])
page_router = APIRouter(include_in_schema=False)


@page_router.get("/signin")
def sign_in_page() -> FileResponse:
    return FileResponse(FRONTEND_DIR / "signin.html")


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _check_same_origin(request: Request) -> None:
    """Reject a sign-in posted from a page of another site, which would sign the browser in."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if urlsplit(origin).netloc != request.headers.get("Host", ""):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"sign-in from another site ({origin}) is not allowed",
        )


def _state(
    user: User | Principal | None, csrf_token: str | None, request: Request
) -> SessionPublic:
    if not auth_required(request):
        return SessionPublic(auth="off")
    return SessionPublic(
        auth="required",
        user=None if user is None else _user_public(request, user),
        csrf_token=csrf_token,
    )


def _user_public(request: Request, user: User | Principal) -> UserPublic:
    if isinstance(user, User):
        return UserPublic.from_row(user)
    with session_scope(request.app.state.sessions) as session:
        row = session.get(User, user.user_id)
        if row is None:
            raise unauthorized("your user no longer exists")
        return UserPublic.from_row(row)


@router.get("")
def read(request: Request) -> SessionPublic:
    """Return whether the lab needs a sign-in and who is signed in; 200 even when no user is."""
    if not auth_required(request):
        return SessionPublic(auth="off")
    try:
        user = identify(request)
    except HTTPException as error:
        if error.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
        user = None
    csrf_token = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if user is not None and user.via == "session" and cookie:
        with session_scope(request.app.state.sessions) as session:
            found = find_session(session, cookie)
            csrf_token = found[0].csrf_token if found else None
    return _state(user, csrf_token, request)


@router.post("")
def sign_in(
    body: SignIn, request: Request, response: Response, settings: SettingsDep
) -> SessionPublic:
    """Sign in with a password; sets the HttpOnly session cookie and the CSRF cookie.

    Failed attempts are limited per user name and per client address, and past
    the limit the response is 429 with Retry-After, whether or not the password is right.
    """
    if not auth_required(request):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="authentication is off on this lab, so there is nothing to sign in to",
        )
    note_attempted_user(request, body.name)
    _check_same_origin(request)
    throttle: SignInThrottle = request.app.state.sign_in_throttle
    address = _client_address(request)
    wait = throttle.retry_after(body.name, address)
    if wait is not None:
        logger.warning("sign-in as %r from %s rejected: too many failures", body.name, address)
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=(
                f"too many failed sign-ins for user {body.name!r} or from {address}; "
                f"try again in {wait} s"
            ),
            headers={"Retry-After": str(wait)},
        )

    lifetime = timedelta(hours=settings.session_hours)
    with session_scope(request.app.state.sessions) as session:
        user = check_password(session, body.name, body.password)
        if user is None:
            throttle.record_failure(body.name, address)
            logger.info("failed sign-in as %r from %s", body.name, address)
            raise unauthorized("wrong user name or password")
        new = start_session(session, user, lifetime)
        throttle.record_success(body.name)
        request.state.principal = Principal(user.id, user.name, user.is_admin, "session")
        state = _state(user, new.session.csrf_token, request)
    set_sign_in_cookies(request, response, new.secret, new.session.csrf_token, lifetime)
    return state


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(user: SignedInUser, request: Request) -> Response:
    """End the browser's sign-in and clear its cookies."""
    if user.via != "session":
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=(
                "this request was made with an API token, not a browser sign-in; "
                "revoke a token with DELETE /api/tokens/{id}"
            ),
        )
    with session_scope(request.app.state.sessions) as session:
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_sign_in_cookies(request, response)
    return response
