"""Random secrets for API tokens, sign-in sessions and CSRF, and their stored digests.

The store keeps only the SHA-256 digest of a token or session secret. A slow
hash such as argon2 is for passwords, which people choose and which can be
guessed. These secrets are 256 random bits, so a guess is hopeless and a fast
digest is enough, and each API request can check its token in one index lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

# Marks a string as a biaslab API token, for users and for secret scanners.
API_TOKEN_PREFIX = "blt_"
SECRET_BYTES = 32
# Characters of a token shown in lists, so that a user can tell tokens apart.
DISPLAY_PREFIX_LENGTH = len(API_TOKEN_PREFIX) + 6


@dataclass(frozen=True)
class IssuedSecret:
    """A new secret, shown once, with the digest that is stored in its place."""

    secret: str
    digest: str
    display_prefix: str


def digest_secret(secret: str) -> str:
    """Return the hex SHA-256 digest under which `secret` is stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _issue(secret: str) -> IssuedSecret:
    return IssuedSecret(
        secret=secret, digest=digest_secret(secret), display_prefix=secret[:DISPLAY_PREFIX_LENGTH]
    )


def issue_api_token() -> IssuedSecret:
    return _issue(API_TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES))


def issue_session_secret() -> IssuedSecret:
    return _issue(secrets.token_urlsafe(SECRET_BYTES))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secrets_match(expected: str, received: str) -> bool:
    """Compare two secrets in time that does not depend on where they differ."""
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "surrogatepass"))
