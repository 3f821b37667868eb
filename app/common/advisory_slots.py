"""Keys of the PostgreSQL advisory locks that cap concurrent work per team or per user.

A capped kind of work (imports per team, exports per user) has `limit` slots per owner; each slot
is an advisory lock whose 64-bit key is a keyed hash of the kind, the owner's id and the slot
number. Every process sharing the database sees the same locks, so a cap holds across workers and
hosts, and a lock held by a connection vanishes with it when a process dies.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

TRY_XACT_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
"""Take the lock `:key` until the transaction ends, if it is free; true when taken."""
_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def slot_key(kind: bytes, owner_id: uuid.UUID, slot: int) -> int:
    """The advisory lock key (a signed 64-bit integer) of one slot of `owner_id` for `kind`.

    Collisions between kinds, owners or with other lock keys are as unlikely as a 64-bit hash
    collision.
    """
    digest = hashlib.blake2b(
        owner_id.bytes + slot.to_bytes(4, "big"), digest_size=8, person=kind
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def hold_until_commit(session: AsyncSession, key: int) -> None:
    """Wait for the advisory lock `key` and hold it until the session's transaction ends."""
    await session.exec(_XACT_LOCK.bindparams(key=key))  # type: ignore[call-overload]
