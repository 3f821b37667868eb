"""A team's webhook endpoints (admins): register, list, change, replace the secret, delete, and
read the delivery log.

An endpoint's URL follows the rules of image URLs (`image_fetch`): `http`/`https`, no
credentials, and a host whose every address is public unless `ALLOW_PRIVATE_IMAGE_URLS` is set.
It is checked when it is registered or changed (400 on field `url`) and again, with a fresh
lookup, at every delivery, since DNS may change in between.
"""

from __future__ import annotations

import uuid

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import ValidationException
from app.common.pagination import Page, PageParams
from app.common.webhook_signing import new_secret
from app.models.base import changes_of, utcnow
from app.models.user import User
from app.models.webhook import (
    WebhookCreate,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookUpdate,
)
from app.services.image_fetch import ImageFetcher, check_url
from app.services.team_scope import get_owned, page_owned, page_where

URL_FIELD = "body.url"


async def checked_url(fetcher: ImageFetcher, url: str) -> str:
    """The normalized URL, once its form and its host's addresses pass the rules.

    Raises:
        ValidationException: on field `body.url`, saying which rule failed.
    """
    try:
        target = check_url(url)
        await fetcher.checked_addresses(target)
    except ValidationException as error:
        reason = error.details[0].message if error.details else error.message
        raise ValidationException.for_field(URL_FIELD, reason) from None
    return str(target.url)


def _distinct(events: list[WebhookEvent]) -> list[WebhookEvent]:
    """The events in the order given, each once."""
    return list(dict.fromkeys(events))


async def get_endpoint(
    session: AsyncSession, *, team_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """The team's endpoint.

    Raises:
        NotFoundException: when no such endpoint is in this team.
    """
    return await get_owned(
        session,
        WebhookEndpoint,
        team_id=team_id,
        record_id=endpoint_id,
        not_found="Webhook not found",
    )


async def list_endpoints(
    session: AsyncSession, *, team_id: uuid.UUID, params: PageParams
) -> Page[WebhookEndpoint]:
    """A page of the team's endpoints, newest first."""
    endpoints, total = await page_owned(
        session,
        WebhookEndpoint,
        team_id=team_id,
        order_by=(col(WebhookEndpoint.created_at).desc(), col(WebhookEndpoint.id).desc()),
        params=params,
    )
    return Page[WebhookEndpoint].build(endpoints, total, params)


async def create_endpoint(
    session: AsyncSession, fetcher: ImageFetcher, *, user: User, data: WebhookCreate
) -> WebhookEndpoint:
    """Register an endpoint with a new secret (the caller shows it once).

    Raises:
        ValidationException: when the URL breaks a rule (field `body.url`).
    """
    endpoint = WebhookEndpoint(
        team_id=user.team_id,
        url=await checked_url(fetcher, data.url),
        events=_distinct(data.events),
        description=data.description,
        enabled=data.enabled,
        secret=new_secret(),
        created_by=user.id,
    )
    session.add(endpoint)
    await session.commit()
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    team_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    data: WebhookUpdate,
) -> WebhookEndpoint:
    """Change an endpoint; `url`, `events` and `enabled` sent as null keep their value.

    Raises:
        NotFoundException: when no such endpoint is in this team.
        ValidationException: when a new URL breaks a rule (field `body.url`).
    """
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id)
    changes = changes_of(data, kept_when_null=("url", "events", "enabled"))
    if "url" in changes:
        changes["url"] = await checked_url(fetcher, changes["url"])
    if "events" in changes:
        changes["events"] = _distinct(changes["events"])
    endpoint.sqlmodel_update(changes)
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    await session.commit()
    return endpoint


async def replace_secret(
    session: AsyncSession, *, team_id: uuid.UUID, endpoint_id: uuid.UUID
) -> str:
    """Give the endpoint a new secret; deliveries sent from now on are signed with it.

    Raises:
        NotFoundException: when no such endpoint is in this team.
    """
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id)
    endpoint.secret, endpoint.updated_at = new_secret(), utcnow()
    secret = endpoint.secret
    session.add(endpoint)
    await session.commit()
    return secret


async def delete_endpoint(
    session: AsyncSession, *, team_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    """Delete an endpoint and its delivery log; pending deliveries are dropped.

    Raises:
        NotFoundException: when no such endpoint is in this team.
    """
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id)
    await session.delete(endpoint)
    await session.commit()


async def list_deliveries(
    session: AsyncSession, *, team_id: uuid.UUID, endpoint_id: uuid.UUID, params: PageParams
) -> Page[WebhookDelivery]:
    """A page of the endpoint's deliveries, newest first.

    Raises:
        NotFoundException: when no such endpoint is in this team.
    """
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id)
    deliveries, total = await page_where(
        session,
        WebhookDelivery,
        where=(col(WebhookDelivery.endpoint_id) == endpoint.id,),
        order_by=(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc()),
        params=params,
    )
    return Page[WebhookDelivery].build(deliveries, total, params)
