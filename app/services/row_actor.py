"""Naming who acts in a transaction, for the row history triggers.

A trigger knows who changed a row from its `updated_by`; for a change that does not set it (a
delete, a schema change that drops a field's values) the service names the actor for the
transaction first with `name_actor`. Deleting a dataset writes no history for its rows
(`skip_history`): their history goes with the dataset.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

_SET_ACTOR = text("SELECT set_config('aitrace.actor', :actor, true)")
_SKIP_HISTORY = text("SELECT set_config('aitrace.skip_row_history', 'on', true)")


async def name_actor(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Record `user_id` as who makes the row changes of the current transaction."""
    await session.exec(_SET_ACTOR.bindparams(actor=str(user_id)))  # type: ignore[call-overload]


async def skip_history(session: AsyncSession) -> None:
    """Write no history for rows deleted in the current transaction (their dataset goes too)."""
    await session.exec(_SKIP_HISTORY)  # type: ignore[call-overload]
