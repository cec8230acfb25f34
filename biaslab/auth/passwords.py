"""Password hashing with argon2id, through argon2-cffi.

argon2-cffi's default parameters (25.1: time cost 3, 64 MiB, parallelism 4) are
the low-memory profile recommended by RFC 9106. A hash stores its parameters,
so hashes made with older parameters still verify, and `password_needs_rehash`
returns True for a hash that should be replaced.
"""

from __future__ import annotations

import logging
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
# Bounds the work a sign-in request can cause; argon2 itself takes any length.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


class InvalidPassword(ValueError):
    """A password that breaks the length rules."""


def check_password_rules(password: str) -> None:
    """Raise InvalidPassword unless `password` has an allowed length."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"password is too short ({len(password)} characters); "
            f"use at least {MIN_PASSWORD_LENGTH}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"password is too long ({len(password)} characters); use at most {MAX_PASSWORD_LENGTH}"
        )


def hash_password(password: str) -> str:
    """Check the length rules, then return the argon2id hash of `password`."""
    check_password_rules(password)
    return _hasher.hash(password)


@cache
def _unusable_hash() -> str:
    # Verified against when the user has no password, so that the response time
    # does not tell which user names exist or have a password.
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Return True when `password` matches `stored_hash`; False for no hash or a mismatch."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    if stored_hash is None:
        _verify(_unusable_hash(), password)
        return False
    return _verify(stored_hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError) as error:
        logger.error("a stored password hash could not be verified: %s", error)
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    """Return True when `stored_hash` was made with other parameters than the current ones."""
    return _hasher.check_needs_rehash(stored_hash)
