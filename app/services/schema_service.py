"""Schemas and their typed fields, including evolution that keeps row values attached."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.db_errors import duplicates_as_errors
from app.common.exceptions import (
    FOREIGN_KEY_VIOLATION,
    ConflictException,
    ErrorDetail,
    ValidationException,
    sqlstate_of,
)
from app.common.pagination import Page, PageParams
from app.domain.field_types import FieldRule, FieldValueError, normalize_config, parse_text
from app.models.base import changes_of, utcnow
from app.models.dataset import Dataset
from app.models.schema import (
    FIELD_NAME_UNIQUE_KEY,
    NAME_UNIQUE_KEY,
    FieldCreate,
    FieldUpdate,
    Schema,
    SchemaCreate,
    SchemaField,
    SchemaUpdate,
    field_order,
)
from app.models.user import User
from app.services import row_actor
from app.services.team_scope import get_owned, page_owned

DEFAULT_SCHEMA_NAME = "Boolean Template"
DEFAULT_SCHEMA_DESCRIPTION = (
    "Default template for boolean classification with predicted value, name, and description"
)
NAME_TAKEN = {
    NAME_UNIQUE_KEY: "A schema with this name already exists",
    FIELD_NAME_UNIQUE_KEY: "Another field of the schema has the same name",
}
WITH_FIELDS = selectinload(Schema.fields)  # type: ignore[arg-type]
"""Loads a schema's fields, in `field_order`, in one more statement for any number of schemas."""


def rule_of(schema_field: SchemaField) -> FieldRule:
    """The validation rule of a stored field."""
    return FieldRule(
        id=str(schema_field.id),
        name=schema_field.name,
        type=schema_field.type,
        required=schema_field.required,
        config=schema_field.config,
        default_value=schema_field.default_value,
    )


def _field_error(index: int, name: str, message: str) -> ValidationException:
    location = f"body.fields.{index}"
    return ValidationException(
        f"Field '{name}': {message}",
        details=[ErrorDetail(field=location, message=message)],
    )


def _checked_definition(index: int, entry: FieldCreate) -> tuple[dict[str, Any], str | None]:
    """Normalise one field's config and check its default value.

    Returns:
        The stored config and default value (`""` means no default).

    Raises:
        ValidationException: naming the field.
    """
    try:
        config = normalize_config(entry.type, entry.config)
        default = entry.default_value if entry.default_value not in (None, "") else None
        if default is not None:
            rule = FieldRule(id="", name=entry.name, type=entry.type, config=config)
            try:
                parse_text(rule, default)
            except FieldValueError as error:
                raise FieldValueError(f"default_value {error}") from None
    except FieldValueError as error:
        raise _field_error(index, entry.name, str(error)) from None
    return config, default


def _check_unique_names(entries: Sequence[FieldCreate]) -> None:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        key = entry.name.lower()
        if key in seen:
            raise _field_error(index, entry.name, "another field has the same name")
        seen.add(key)


async def get_schema_row(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    schema_id: uuid.UUID,
    lock: bool = False,
    with_fields: bool = False,
) -> Schema:
    """The team's schema record; with `lock`, locked for update; with `with_fields`, its
    `fields` loaded (else reading them raises).

    Raises:
        NotFoundException: when no such schema is in this team.
    """
    return await get_owned(
        session,
        Schema,
        team_id=team_id,
        record_id=schema_id,
        not_found="Schema not found",
        lock=lock,
        options=[WITH_FIELDS] if with_fields else [],
    )


async def get_fields(session: AsyncSession, *, schema_id: uuid.UUID) -> list[SchemaField]:
    """The fields of a schema (already scoped by the caller), in `field_order`."""
    query = select(SchemaField).where(SchemaField.schema_id == schema_id).order_by(*field_order())
    return list((await session.exec(query)).all())


async def get_schema(session: AsyncSession, *, team_id: uuid.UUID, schema_id: uuid.UUID) -> Schema:
    """One schema of the team with its fields.

    Raises:
        NotFoundException: when no such schema is in this team.
    """
    return await get_schema_row(session, team_id=team_id, schema_id=schema_id, with_fields=True)


async def list_schemas(
    session: AsyncSession, *, team_id: uuid.UUID, params: PageParams
) -> Page[Schema]:
    """A page of the team's schemas ordered by name, each with its fields (three statements)."""
    schemas, total = await page_owned(
        session,
        Schema,
        team_id=team_id,
        order_by=(func.lower(Schema.name), col(Schema.id)),
        params=params,
        options=[WITH_FIELDS],
    )
    return Page[Schema].build(schemas, total, params)


def _new_field(schema_id: uuid.UUID, index: int, entry: FieldCreate) -> SchemaField:
    config, default = _checked_definition(index, entry)
    return SchemaField(
        schema_id=schema_id,
        name=entry.name,
        type=entry.type,
        required=entry.required,
        default_value=default,
        position=entry.position,
        config=config,
    )


def _copy_field(schema_id: uuid.UUID, source: SchemaField) -> SchemaField:
    return SchemaField(
        schema_id=schema_id,
        name=source.name,
        type=source.type,
        required=source.required,
        default_value=source.default_value,
        position=source.position,
        config=dict(source.config),
    )


async def create_schema(session: AsyncSession, *, user: User, data: SchemaCreate) -> Schema:
    """Create a schema from a field list, or as a copy of another schema of the team.

    Raises:
        ValidationException: for an invalid field, or fields given together with a copy source.
        NotFoundException: when the copy source is not a schema of this team.
        DuplicateException: when the team already has a schema with this name (any case).
    """
    schema = Schema(
        team_id=user.team_id,
        name=data.name,
        description=data.description,
        created_by=user.id,
        updated_by=user.id,
    )
    if data.copy_from_schema_id is not None:
        if data.fields:
            raise ValidationException.for_field(
                "body.fields", "must be empty when copy_from_schema_id is given"
            )
        source = await get_schema_row(
            session, team_id=user.team_id, schema_id=data.copy_from_schema_id
        )
        fields = [
            _copy_field(schema.id, item) for item in await get_fields(session, schema_id=source.id)
        ]
    else:
        _check_unique_names(data.fields)
        fields = [_new_field(schema.id, index, entry) for index, entry in enumerate(data.fields)]
    async with duplicates_as_errors(session, NAME_TAKEN):
        session.add(schema)
        await session.flush()
        session.add_all(fields)
        created = await get_schema(session, team_id=user.team_id, schema_id=schema.id)
        await session.commit()
    return created


async def add_default_schema(
    session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID
) -> Schema:
    """Write the "Boolean Template" schema every new team starts with (not committed)."""
    schema = Schema(
        team_id=team_id,
        name=DEFAULT_SCHEMA_NAME,
        description=DEFAULT_SCHEMA_DESCRIPTION,
        created_by=user_id,
        updated_by=user_id,
    )
    session.add(schema)
    await session.flush()
    session.add_all(
        [
            SchemaField(
                schema_id=schema.id, name="predicted", type="boolean", required=True, position=0
            ),
            SchemaField(schema_id=schema.id, name="name", type="text", required=True, position=1),
            SchemaField(
                schema_id=schema.id,
                name="description",
                type="text",
                required=False,
                position=2,
                config={"multiline": True},
            ),
        ]
    )
    await session.flush()
    return schema


def _match_fields(
    existing: Sequence[SchemaField], entries: Sequence[FieldUpdate]
) -> list[SchemaField | None]:
    """Pair each entry with the existing field it updates: by `id`, or else by name.

    Raises:
        ValidationException: for an id that is not a field of this schema, or one used twice.
    """
    by_id = {item.id: item for item in existing}
    claimed: set[uuid.UUID] = set()
    matches: list[SchemaField | None] = [None] * len(entries)
    for index, entry in enumerate(entries):
        if entry.id is None:
            continue
        found = by_id.get(entry.id)
        if found is None:
            raise _field_error(index, entry.name, "id is not a field of this schema")
        if found.id in claimed:
            raise _field_error(index, entry.name, "id is used by another entry")
        claimed.add(found.id)
        matches[index] = found
    by_name = {item.name.lower(): item for item in existing if item.id not in claimed}
    for index, entry in enumerate(entries):
        if entry.id is None:
            found = by_name.pop(entry.name.lower(), None)
            if found is not None:
                claimed.add(found.id)
                matches[index] = found
    return matches


async def _field_holds_values(
    session: AsyncSession, *, schema_id: uuid.UUID, field_id: uuid.UUID
) -> bool:
    query = text("""SELECT EXISTS (
               SELECT 1 FROM dataset_rows r JOIN datasets d ON d.id = r.dataset_id
                WHERE d.schema_id = :schema_id AND r.data ? :field_id)""")
    result = await session.exec(  # type: ignore[call-overload]
        query.bindparams(schema_id=schema_id, field_id=str(field_id))
    )
    return bool(result.scalar())


async def _remove_values(
    session: AsyncSession,
    *,
    schema_id: uuid.UUID,
    field_ids: Sequence[uuid.UUID],
    actor: uuid.UUID,
) -> None:
    """Delete the values of removed fields from every row of every dataset on the schema;
    the rows' history names `actor` as who removed them."""
    if not field_ids:
        return
    await row_actor.name_actor(session, actor)
    statement = text("""UPDATE dataset_rows SET data = data - CAST(:keys AS text[])
            WHERE dataset_id IN (SELECT id FROM datasets WHERE schema_id = :schema_id)
              AND data ?| CAST(:keys AS text[])""").bindparams(bindparam("keys", type_=ARRAY(TEXT)))
    await session.exec(  # type: ignore[call-overload]
        statement.bindparams(schema_id=schema_id, keys=[str(item) for item in field_ids])
    )


async def _replace_fields(
    session: AsyncSession, schema: Schema, entries: Sequence[FieldUpdate], *, actor: uuid.UUID
) -> None:
    """Apply a complete new field list, keeping the ids of matched fields.

    Raises:
        ValidationException: for an invalid entry.
        ConflictException: when a field holding values in some row would change type.
    """
    _check_unique_names(entries)
    existing = await get_fields(session, schema_id=schema.id)
    matches = _match_fields(existing, entries)
    now = utcnow()
    kept: list[SchemaField] = []
    for index, (entry, match) in enumerate(zip(entries, matches)):
        config, default = _checked_definition(index, entry)
        if match is None:
            continue
        if match.type != entry.type and await _field_holds_values(
            session, schema_id=schema.id, field_id=match.id
        ):
            raise ConflictException(
                f"Field '{match.name}' holds values; remove it and add a new field instead of "
                "changing its type"
            )
        match.name = f"~{match.id.hex}"
        match.type, match.required, match.default_value = entry.type, entry.required, default
        match.position, match.config, match.updated_at = entry.position, config, now
        kept.append(match)
    kept_ids = {item.id for item in kept}
    removed = [item.id for item in existing if item.id not in kept_ids]
    await _remove_values(session, schema_id=schema.id, field_ids=removed, actor=actor)
    if removed:
        await session.exec(delete(SchemaField).where(col(SchemaField.id).in_(removed)))
    session.add_all(kept)
    await session.flush()
    for index, (entry, match) in enumerate(zip(entries, matches)):
        if match is None:
            match = _new_field(schema.id, index, entry)
        match.name = entry.name
        session.add(match)
    await session.flush()


async def update_schema(
    session: AsyncSession, *, user: User, schema_id: uuid.UUID, data: SchemaUpdate
) -> Schema:
    """Change a schema's name, description and (when given) its whole field list.

    Field ids are stable: an entry with the id of one of this schema's fields, or else the
    same name as an existing field, updates that field in place. Fields left out are removed,
    with their values, from every row of every dataset using the schema, in this transaction.

    Raises:
        NotFoundException: when the schema is not in this team.
        ValidationException: for an invalid field list.
        ConflictException: when a field holding values would change type.
        DuplicateException: when the new name is taken in the team.
    """
    schema = await get_schema_row(session, team_id=user.team_id, schema_id=schema_id, lock=True)
    schema.sqlmodel_update(changes_of(data, kept_when_null={"name"}, exclude={"fields"}))
    async with duplicates_as_errors(session, NAME_TAKEN):
        if data.fields is not None:
            await _replace_fields(session, schema, data.fields, actor=user.id)
        schema.updated_by, schema.updated_at = user.id, utcnow()
        session.add(schema)
        updated = await get_schema(session, team_id=user.team_id, schema_id=schema.id)
        await session.commit()
    return updated


async def delete_schema(session: AsyncSession, *, team_id: uuid.UUID, schema_id: uuid.UUID) -> None:
    """Delete a schema and its fields.

    Raises:
        NotFoundException: when the schema is not in this team.
        ConflictException: while any dataset uses it.
    """
    schema = await get_schema_row(session, team_id=team_id, schema_id=schema_id, lock=True)
    in_use = (await session.exec(select(exists().where(col(Dataset.schema_id) == schema.id)))).one()
    if in_use:
        raise ConflictException("The schema is used by a dataset")
    try:
        await session.delete(schema)
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        if sqlstate_of(error) == FOREIGN_KEY_VIOLATION:
            raise ConflictException("The schema is used by a dataset") from None
        raise
