"""The sign-in and CSRF cookies.

Both cookies are SameSite=Lax, so browsers leave them off requests that other
sites start, except top-level navigations with GET. The session cookie is
HttpOnly; the CSRF cookie is not, because the pages' scripts read it. Both
are Secure when the request came over https, unless `Settings.secure_cookies`
sets the flag either way. Over plain http on loopback they cannot be Secure, since a browser would
not send such a cookie to an http address other than localhost.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request, Response

from backend.security.identity import CSRF_COOKIE, SESSION_COOKIE
from biaslab.settings import Settings


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    if settings.secure_cookies is not None:
        return settings.secure_cookies
    return request.url.scheme == "https"


def set_sign_in_cookies(
    request: Request, response: Response, secret: str, csrf_token: str, lifetime: timedelta
) -> None:
    max_age = int(lifetime.total_seconds())
    secure = _secure(request)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="lax",
    )


def clear_sign_in_cookies(request: Request, response: Response) -> None:
    secure = _secure(request)
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="lax")
