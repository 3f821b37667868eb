"""Password hashing and access tokens."""

from __future__ import annotations

import asyncio
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

JWT_ALGORITHM = "HS256"
SESSION_LIFETIME = timedelta(hours=24)
REMEMBER_ME_LIFETIME = timedelta(days=7)
TEMP_PASSWORD_LENGTH = 20


@dataclass(frozen=True)
class Argon2Cost:
    """The work an Argon2id hash takes: iterations, memory in KiB, and lanes.

    Every hash records its own cost (`$argon2id$v=19$m=...,t=...,p=...$`), so a hash stays
    verifiable whatever cost is configured when it is checked.
    """

    time_cost: int
    memory_cost: int
    parallelism: int


PRODUCTION_ARGON2_COST = Argon2Cost(time_cost=2, memory_cost=19456, parallelism=1)
"""OWASP's recommended minimum for Argon2id (19 MiB, 2 iterations, 1 lane): the service's cost."""


def password_hasher(cost: Argon2Cost) -> PasswordHash:
    """An Argon2id hasher producing hashes of the given cost."""
    return PasswordHash(
        (
            Argon2Hasher(
                time_cost=cost.time_cost,
                memory_cost=cost.memory_cost,
                parallelism=cost.parallelism,
            ),
        )
    )


_password_hash = password_hasher(PRODUCTION_ARGON2_COST)


def configure_password_hashing(cost: Argon2Cost) -> None:
    """Hash new passwords (and the unknown-account dummy) with `cost` from now on, process-wide.

    The service never calls this and always runs at `PRODUCTION_ARGON2_COST`; the test suite
    lowers the cost to keep fixtures fast. Hashes made before the change still verify.
    """
    global _password_hash
    _password_hash = password_hasher(cost)
    _dummy_hash.cache_clear()


async def hash_password(password: str) -> str:
    """Hash `password` in a worker thread, keeping the event loop free."""
    return await asyncio.to_thread(_password_hash.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Check `password` against `password_hash` in a worker thread.

    With `password_hash=None` (unknown account) a throw-away hash is verified instead, so that an
    unknown email costs the same time as a wrong password.
    """
    target = password_hash if password_hash is not None else _dummy_hash()
    matches = await asyncio.to_thread(_password_hash.verify, password, target)
    return matches and password_hash is not None


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password at the configured cost, verified for unknown accounts."""
    return _password_hash.hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    """A random temporary password with letters, digits and punctuation (about 120 bits)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(TEMP_PASSWORD_LENGTH))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate


@dataclass(frozen=True)
class TokenClaims:
    """What a valid access token says."""

    user_id: uuid.UUID
    credential_version: int


class InvalidTokenError(Exception):
    """The token is malformed, tampered, expired, or not one of ours."""


def create_access_token(
    *, user_id: uuid.UUID, credential_version: int, secret: str, lifetime: timedelta
) -> str:
    """Sign an HS256 token for the user, valid for `lifetime`."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "ver": credential_version,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, *, secret: str) -> TokenClaims:
    """Verify signature, algorithm and expiry, and read the claims.

    Raises:
        InvalidTokenError: for any token that must not authenticate anybody.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "ver"]},
        )
        version = claims["ver"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidTokenError("bad credential version")
        return TokenClaims(user_id=uuid.UUID(str(claims["sub"])), credential_version=version)
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidTokenError(str(error)) from None
