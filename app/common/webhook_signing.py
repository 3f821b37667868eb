"""Signing webhook messages as the Standard Webhooks specification describes.

A secret is `whsec_` followed by the base64 of 32 random bytes, the HMAC key. A message is
signed as `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) and sent with the
headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, so a receiver
can check who sent it, that the body is intact, and (by the timestamp) that it is not replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    """A new random signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value of a message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers that carry a message's id, time and signature."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
