"""Schemas and their fields."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.schema import Schema, SchemaField

DEFAULT_SCHEMA_NAME = "Boolean Template"
DEFAULT_SCHEMA_DESCRIPTION = (
    "Default template for boolean classification with predicted value, name, and description"
)


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
    fields = [
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
    session.add_all(fields)
    await session.flush()
    return schema
