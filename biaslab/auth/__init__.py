"""Passwords, API tokens and sign-in limits; no web framework and no database here."""

from biaslab.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    InvalidPassword,
    check_password_rules,
    hash_password,
    password_needs_rehash,
    verify_password,
)
from biaslab.auth.throttle import SignInThrottle, ThrottleLimits
from biaslab.auth.tokens import (
    API_TOKEN_PREFIX,
    IssuedSecret,
    digest_secret,
    issue_api_token,
    issue_session_secret,
    new_csrf_token,
    secrets_match,
)

__all__ = [
    "API_TOKEN_PREFIX",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "InvalidPassword",
    "IssuedSecret",
    "SignInThrottle",
    "ThrottleLimits",
    "check_password_rules",
    "digest_secret",
    "hash_password",
    "issue_api_token",
    "issue_session_secret",
    "new_csrf_token",
    "password_needs_rehash",
    "secrets_match",
    "verify_password",
]
