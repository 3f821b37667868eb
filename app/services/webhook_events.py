"""Raising webhook events: one delivery per subscribed endpoint, in the caller's transaction.

`emit` is called by the service that makes the change, before it commits: the deliveries and
their queue jobs are written on the same connection, so an event is sent if and only if its
change is committed (a rolled-back change sends nothing). A team without endpoints costs one
indexed query.

Every delivery's body is fixed here and signed as is on every attempt:
`{"type": event, "timestamp": ISO 8601, "data": {...}}`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.base import utcnow
from app.models.webhook import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.services.job_queue import WEBHOOK_DELIVERY, enqueue


async def emit(
    session: AsyncSession, *, team_id: uuid.UUID, event: WebhookEvent, data: dict[str, Any]
) -> None:
    """Queue `event` with `data` for every enabled endpoint of the team subscribed to it."""
    await emit_many(session, team_id=team_id, event=event, items=[data])


async def emit_many(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    event: WebhookEvent,
    items: Sequence[dict[str, Any]],
) -> None:
    """Queue one `event` per item of `items` (a bulk change), for every subscribed endpoint."""
    if not items:
        return
    endpoints = (
        await session.exec(
            select(WebhookEndpoint.id).where(
                col(WebhookEndpoint.team_id) == team_id,
                col(WebhookEndpoint.enabled),
                col(WebhookEndpoint.events).contains([event]),
            )
        )
    ).all()
    if not endpoints:
        return
    now = utcnow()
    bodies = [
        json.dumps({"type": event, "timestamp": now.isoformat(), "data": data}, default=str)
        for data in items
    ]
    deliveries = [
        {
            "id": uuid.uuid4(),
            "endpoint_id": endpoint,
            "event": event,
            "body": body,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for endpoint in endpoints
        for body in bodies
    ]
    await session.exec(insert(WebhookDelivery), params=deliveries)
    await enqueue(session, WEBHOOK_DELIVERY, [str(item["id"]).encode() for item in deliveries])
