"""Webhook endpoints of the caller's team and their delivery logs (admins only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.webhook import (
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
    WebhookPage,
    WebhookPublic,
    WebhookSecret,
    WebhookUpdate,
)
from app.routes.deps import AdminUser, ImageFetcherDep, SessionDep
from app.services import webhook_service

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

READ_ERRORS = error_responses(400, 401, 403, 404)
EVENTS = """Events: `import.finished` (a background import ended: done, failed or cancelled),
`row.reviewed` (a row's status became `reviewed`), `row.deleted` (one per row), and
`dataset.deleted`. Each is POSTed as JSON `{"type", "timestamp", "data"}` and signed as the
Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
see `docs/webhooks.md`."""
URL_RULES = """The URL follows the rules of image URLs: `http` or `https`, no user name or
password, and (unless `ALLOW_PRIVATE_IMAGE_URLS` is set) a host whose every address is public;
it is checked here (400 on `body.url`) and again at every delivery."""


@router.get("", operation_id="webhooks-list", response_model=WebhookPage, responses=READ_ERRORS)
async def list_webhooks(
    user: AdminUser, session: SessionDep, params: PageDep
) -> Page[WebhookEndpoint]:
    """A page of the team's webhook endpoints, newest first (admin)."""
    return await webhook_service.list_endpoints(session, team_id=user.team_id, params=params)


@router.post(
    "",
    operation_id="webhooks-create",
    status_code=201,
    response_model=WebhookCreated,
    responses=error_responses(400, 401, 403),
    description=f"""Register an endpoint for some of the team's events (admin). The answer
holds the signing `secret`, shown this once.

{EVENTS}

{URL_RULES}""",
)
async def create_webhook(
    data: WebhookCreate, user: AdminUser, session: SessionDep, fetcher: ImageFetcherDep
) -> WebhookCreated:
    """Register an endpoint (see the description)."""
    endpoint = await webhook_service.create_endpoint(session, fetcher, user=user, data=data)
    return WebhookCreated.model_validate(endpoint, from_attributes=True)


@router.get(
    "/{webhook_id}",
    operation_id="webhooks-get",
    response_model=WebhookPublic,
    responses=READ_ERRORS,
)
async def get_webhook(
    webhook_id: uuid.UUID, user: AdminUser, session: SessionDep
) -> WebhookEndpoint:
    """One endpoint of the team (admin), without its secret."""
    return await webhook_service.get_endpoint(session, team_id=user.team_id, endpoint_id=webhook_id)


@router.patch(
    "/{webhook_id}",
    operation_id="webhooks-update",
    response_model=WebhookPublic,
    responses=READ_ERRORS,
    description=f"""Change an endpoint's URL, events, description or `enabled` (admin); keys
left out keep their value. A disabled endpoint gets no new deliveries, and those still pending
are marked failed instead of being sent.

{URL_RULES}""",
)
async def update_webhook(
    webhook_id: uuid.UUID,
    data: WebhookUpdate,
    user: AdminUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
) -> WebhookEndpoint:
    """Change an endpoint (see the description)."""
    return await webhook_service.update_endpoint(
        session, fetcher, team_id=user.team_id, endpoint_id=webhook_id, data=data
    )


@router.post(
    "/{webhook_id}/secret",
    operation_id="webhooks-replace-secret",
    response_model=WebhookSecret,
    responses=READ_ERRORS,
)
async def replace_webhook_secret(
    webhook_id: uuid.UUID, user: AdminUser, session: SessionDep
) -> WebhookSecret:
    """Give the endpoint a new signing secret, shown this once (admin); every attempt from now
    on, retries of earlier events included, is signed with it."""
    secret = await webhook_service.replace_secret(
        session, team_id=user.team_id, endpoint_id=webhook_id
    )
    return WebhookSecret(secret=secret)


@router.delete(
    "/{webhook_id}",
    operation_id="webhooks-delete",
    status_code=204,
    response_class=Response,
    responses=READ_ERRORS,
)
async def delete_webhook(webhook_id: uuid.UUID, user: AdminUser, session: SessionDep) -> Response:
    """Delete an endpoint and its delivery log (admin); pending deliveries are dropped."""
    await webhook_service.delete_endpoint(session, team_id=user.team_id, endpoint_id=webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="webhooks-deliveries",
    response_model=WebhookDeliveryPage,
    responses=READ_ERRORS,
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID, user: AdminUser, session: SessionDep, params: PageDep
) -> Page[WebhookDelivery]:
    """The endpoint's delivery log, newest first (admin): per event its state (`pending`,
    `delivered`, `failed`), the attempts made, and the status and error of the last one."""
    return await webhook_service.list_deliveries(
        session, team_id=user.team_id, endpoint_id=webhook_id, params=params
    )
