"""Sending a webhook delivery: one queue job per delivery, retried with backoff until it lands.

An attempt POSTs the delivery's fixed body, signed with the endpoint's current secret (Standard
Webhooks headers, `webhook-id` = `msg_` + the delivery id, the same on every attempt), through
the image fetcher's safe path: the URL rules and a fresh check of the host's addresses, pinned
for the connection, no redirects followed. A 2xx answer delivers it. Anything else (another
status, a refused address, no connection, no answer within `IMAGE_FETCH_TIMEOUT`) is recorded
on the delivery and the job is queued again after `RETRY_BASE` × 2^(attempt-1) (5 s, 10 s,
20 s ... at most `MAX_DELAY`); after `MAX_ATTEMPTS` the delivery is `failed`. An error that is
not an attempt's outcome (the database, while the delivery is read or its outcome written) is
left to the queue, which runs the job again after its own backoff (`QUEUE_RETRIES`). So an
event is delivered at least once: a receiver should use `webhook-id` to ignore a repeat. A
delivery whose endpoint was disabled meanwhile is marked failed without being sent (its
attempts stay as they were); a deleted endpoint takes its deliveries with it.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from pgqueuer import Job, RetryRequested
from sqlalchemy import text
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import AppException
from app.common.webhook_signing import signed_headers
from app.models.base import utcnow
from app.models.webhook import WebhookDelivery, WebhookEndpoint, webhook_message_id
from app.services.image_fetch import ImageFetcher

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(seconds=5)
MAX_DELAY = timedelta(hours=1)
QUEUE_RETRIES = 2 * MAX_ATTEMPTS
"""How often the queue runs a delivery job again after an error the job did not handle.

pgqueuer counts every run again of a job against this budget, the `RetryRequested` after
each failed attempt included, so it must exceed `MAX_ATTEMPTS`: else an unexpected error
after the first failed attempt would end the job and leave its delivery pending for ever."""
USER_AGENT = "AITrace-webhooks/1.0"
DISABLED = "not sent: the endpoint is disabled"
GAVE_UP = "not sent: an error of the service stopped the delivery (see the server log)"
_GIVE_UP = text("""UPDATE webhook_deliveries SET state = 'failed', last_error = :error
        WHERE id = :delivery_id AND state = 'pending'""")


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt."""
    delay: timedelta = RETRY_BASE * 2 ** (attempts - 1)
    return min(delay, MAX_DELAY)


async def _send(
    fetcher: ImageFetcher, endpoint: WebhookEndpoint, delivery: WebhookDelivery
) -> tuple[int | None, str | None]:
    """One attempt: the answer's status and, when it is not a success, why."""
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(endpoint.secret, webhook_message_id(delivery.id), int(time.time()), body),
    }
    try:
        status = await fetcher.post(endpoint.url, body, headers)
    except AppException as error:
        reason = error.details[0].message if error.details else error.message
        return None, reason
    if 200 <= status < 300:
        return status, None
    return status, f"the endpoint answered HTTP {status}"


def _record(delivery: WebhookDelivery, status: int | None, problem: str | None) -> None:
    """Write one attempt's outcome on the delivery: delivered, still pending, or failed for
    good after `MAX_ATTEMPTS`."""
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = status, problem
    delivery.last_attempt_at = utcnow()
    if problem is None:
        delivery.state, delivery.delivered_at = "delivered", delivery.last_attempt_at
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = "failed"
        logger.warning("Webhook delivery %s failed for good: %s", delivery.id, problem)


async def _pending(
    session: AsyncSession, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
    """The delivery and its endpoint, or None when there is nothing to send any more."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.state != "pending":
        return None
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None:
        return None
    return delivery, endpoint


async def deliver(job: Job, resources: Any) -> None:
    """The queue job of one delivery; `resources` is the worker's `WorkerResources`.

    When an unexpected error comes on the queue's last run (`QUEUE_RETRIES` used up), the
    delivery is marked failed with `GAVE_UP`, so that no delivery stays pending for ever.
    """
    delivery_id = uuid.UUID((job.payload or b"").decode())
    try:
        await _attempt(delivery_id, resources)
    except RetryRequested:
        raise
    except Exception:
        if job.attempts >= QUEUE_RETRIES:
            logger.exception("Webhook delivery %s gave up", delivery_id)
            async with resources.sessionmaker() as session:
                await session.exec(_GIVE_UP.bindparams(delivery_id=delivery_id, error=GAVE_UP))
                await session.commit()
        raise


async def _attempt(delivery_id: uuid.UUID, resources: Any) -> None:
    """One attempt of a delivery, recorded; RetryRequested when it should be tried again."""
    async with resources.sessionmaker() as session:
        loaded = await _pending(session, delivery_id)
        await session.commit()
        if loaded is None:
            return
        delivery, endpoint = loaded
        if endpoint.enabled:
            _record(delivery, *await _send(resources.fetcher, endpoint, delivery))
        else:
            delivery.state, delivery.last_error = "failed", DISABLED
        attempts, state = delivery.attempts, delivery.state
        session.add(delivery)
        try:
            await session.commit()
        except StaleDataError:
            return
    if state == "pending":
        raise RetryRequested(delay=retry_delay(attempts), reason="the delivery did not land")
