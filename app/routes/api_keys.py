"""The caller's API keys (any member, signed in with a token or the cookie)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.api_key import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyPublic
from app.routes.deps import PasswordUser, SessionDep
from app.services import api_key_service

router = APIRouter(prefix="/api-keys", tags=["api-keys"])

READ_ERRORS = error_responses(400, 401, 403, 404)
KEYS = """A key is sent as `Authorization: Bearer ait_...` and works wherever a token does,
within its scopes: `read` allows GET and HEAD, `write` every method, `admin` the admin routes
as well (each scope includes the ones before it; `admin` needs the admin role). A revoked or
expired key, or one of a deleted user, is 401; a key outside its scope is 403. Keys are
managed with a token or the login cookie, not with a key (403)."""


@router.post(
    "",
    operation_id="api-keys-create",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=error_responses(400, 401, 403),
    description=f"""Create a key for yourself; the answer holds the key, shown this once
(only its SHA-256 is kept, and `prefix` to recognise it).

{KEYS}""",
)
async def create_api_key(
    data: ApiKeyCreate, user: PasswordUser, session: SessionDep
) -> ApiKeyCreated:
    """Create a key (see the description)."""
    key, secret = await api_key_service.create_key(session, user=user, data=data)
    return ApiKeyCreated.model_validate({**key.model_dump(), "key": secret})


@router.get("", operation_id="api-keys-list", response_model=ApiKeyPage, responses=READ_ERRORS)
async def list_api_keys(user: PasswordUser, session: SessionDep, params: PageDep) -> Page[ApiKey]:
    """A page of your keys, newest first, revoked ones included; never their secrets."""
    return await api_key_service.list_keys(session, user=user, params=params)


@router.get(
    "/{key_id}", operation_id="api-keys-get", response_model=ApiKeyPublic, responses=READ_ERRORS
)
async def get_api_key(key_id: uuid.UUID, user: PasswordUser, session: SessionDep) -> ApiKey:
    """One of your keys (another user's key is 404)."""
    return await api_key_service.get_key(session, user=user, key_id=key_id)


@router.delete(
    "/{key_id}",
    operation_id="api-keys-revoke",
    status_code=204,
    response_class=Response,
    responses=READ_ERRORS,
)
async def revoke_api_key(key_id: uuid.UUID, user: PasswordUser, session: SessionDep) -> Response:
    """Revoke one of your keys: it stops working at once and stays listed with `revoked_at`."""
    await api_key_service.revoke_key(session, user=user, key_id=key_id)
    return Response(status_code=204)
