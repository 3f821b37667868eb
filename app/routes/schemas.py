"""Schemas of the caller's team (writes are admin-only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.schema import Schema, SchemaCreate, SchemaPage, SchemaPublic, SchemaUpdate
from app.routes.deps import AdminUser, CurrentUser, SessionDep
from app.services import schema_service

router = APIRouter(prefix="/schemas", tags=["schemas"])


@router.get(
    "",
    operation_id="schemas-list",
    response_model=SchemaPage,
    responses=error_responses(400, 401, 403),
)
async def list_schemas(user: CurrentUser, session: SessionDep, params: PageDep) -> Page[Schema]:
    """A page of the team's schemas with their fields, ordered by name."""
    return await schema_service.list_schemas(session, team_id=user.team_id, params=params)


@router.get(
    "/{schema_id}",
    operation_id="schemas-get",
    response_model=SchemaPublic,
    responses=error_responses(400, 401, 403, 404),
)
async def get_schema(schema_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Schema:
    """One schema of the team, fields in position order."""
    return await schema_service.get_schema(session, team_id=user.team_id, schema_id=schema_id)


@router.post(
    "",
    operation_id="schemas-create",
    status_code=201,
    response_model=SchemaPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def create_schema(data: SchemaCreate, user: AdminUser, session: SessionDep) -> Schema:
    """Create a schema (admin), from `fields` or as a copy of `copy_from_schema_id`.

    Field configs are normalised: keys of another type are dropped, `null`/`""` optional numbers
    are unset, blank enum options are dropped. `default_value` is text that must parse as a
    valid value (booleans: true/false/yes/no/1/0). With `copy_from_schema_id` (a schema of the
    same team, else 404) the new schema gets copies of its fields with new ids, and `fields` must
    be empty. A name already used in the team (any case) is 409 DUPLICATE.
    """
    return await schema_service.create_schema(session, user=user, data=data)


@router.put(
    "/{schema_id}",
    operation_id="schemas-update",
    response_model=SchemaPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def update_schema(
    schema_id: uuid.UUID, data: SchemaUpdate, user: AdminUser, session: SessionDep
) -> Schema:
    """Update a schema (admin); `fields`, when given, is the complete new list.

    An entry carrying the `id` of one of this schema's fields, or else the same name as an
    existing field, updates that field in place and keeps its id, so row values stay attached
    (rename, reorder, change `required`, `config` or default freely). Existing fields absent from
    the list are removed, and their values are removed from every row of every dataset using the
    schema, in the same transaction. Changing the `type` of a field that holds values is 409
    CONFLICT. Values already stored are not re-validated when a config narrows.
    """
    return await schema_service.update_schema(session, user=user, schema_id=schema_id, data=data)


@router.delete(
    "/{schema_id}",
    operation_id="schemas-delete",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def delete_schema(schema_id: uuid.UUID, user: AdminUser, session: SessionDep) -> Response:
    """Delete a schema (admin); 409 CONFLICT while any dataset uses it."""
    await schema_service.delete_schema(session, team_id=user.team_id, schema_id=schema_id)
    return Response(status_code=204)
