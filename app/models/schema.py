"""Schemas and their typed fields."""

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import CheckConstraint, Column, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Relationship, SQLModel, col

from app.common.pagination import Page
from app.common.validation import Description, FieldName, Name
from app.domain.field_types import TEXT_MAX_LENGTH_LIMIT
from app.models.base import RequestModel, id_field, lower, timestamp_field, user_ref_field
from app.models.field_config import FieldConfig, FieldConfigInput

FieldType = Literal["boolean", "text", "numeric", "enum"]
NAME_UNIQUE_KEY = "schemas_team_name_key"
"""Unique index on (team_id, lower(name)): schema names are unique per team, ignoring case."""
FIELD_NAME_UNIQUE_KEY = "schema_fields_schema_name_key"
"""Unique index on (schema_id, lower(name)): field names are unique per schema, ignoring case."""


class FieldBase(SQLModel):
    """The leading columns of a field's public shape, in the order the API shows them."""

    id: uuid.UUID
    schema_id: uuid.UUID = Field(foreign_key="schemas.id", ondelete="CASCADE", nullable=False)
    name: str = Field(sa_type=String(100))
    type: FieldType = Field(sa_type=String(10))


class SchemaField(FieldBase, table=True):
    __tablename__ = "schema_fields"
    __table_args__ = (
        Index(FIELD_NAME_UNIQUE_KEY, "schema_id", lower("name"), unique=True),
        CheckConstraint(
            "type IN ('boolean', 'text', 'numeric', 'enum')", name="schema_fields_type_check"
        ),
    )

    id: uuid.UUID = id_field()
    required: bool = False
    default_value: str | None = Field(default=None, sa_type=Text)
    position: int = 0
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


def field_order() -> tuple[Any, ...]:
    """The order fields are shown, validated and exported in: by position, then name, then id.

    Names compare lower-cased, by code point (`COLLATE "C"`), whatever the database's locale.
    """
    return (
        col(SchemaField.position),
        func.lower(SchemaField.name).collate("C"),
        col(SchemaField.id),
    )


class SchemaBase(SQLModel):
    """The leading columns of a schema's public shape, in the order the API shows them."""

    id: uuid.UUID
    name: str = Field(sa_type=String(100))


class Schema(SchemaBase, table=True):
    """A schema; `fields` is loaded only on request (see `schema_service`)."""

    __tablename__ = "schemas"
    __table_args__ = (Index(NAME_UNIQUE_KEY, "team_id", lower("name"), unique=True),)

    id: uuid.UUID = id_field()
    description: str | None = Field(default=None, max_length=500)
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    created_by: uuid.UUID | None = user_ref_field()
    updated_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    fields: list[SchemaField] = Relationship(
        sa_relationship_kwargs={
            "lazy": "raise",
            "order_by": field_order,
            "cascade": "all, delete-orphan",
            "passive_deletes": True,
        }
    )


MAX_FIELDS = 200


class FieldCreate(RequestModel):
    """A field as a client defines it. `default_value` is text, parsed like a CSV cell."""

    name: FieldName
    type: FieldType
    required: bool = False
    default_value: str | None = Field(default=None, max_length=TEXT_MAX_LENGTH_LIMIT)
    position: int = Field(ge=0, le=1_000_000)
    config: FieldConfigInput | None = None


class FieldUpdate(FieldCreate):
    """A field in a schema update; `id` (or else the name) matches an existing field."""

    id: uuid.UUID | None = None


class SchemaCreate(RequestModel):
    name: Name
    description: Description | None = None
    fields: list[FieldCreate] = Field(default_factory=list, max_length=MAX_FIELDS)
    copy_from_schema_id: uuid.UUID | None = None


class SchemaUpdate(RequestModel):
    """Changes to a schema; `fields`, when given, is the complete new list."""

    name: Name | None = None
    description: Description | None = None
    fields: list[FieldUpdate] | None = Field(default=None, max_length=MAX_FIELDS)


class FieldPublic(FieldBase):
    required: bool
    default_value: str | None
    position: int
    config: FieldConfig
    created_at: datetime
    updated_at: datetime


class SchemaPublic(SchemaBase):
    description: str | None
    team_id: uuid.UUID
    created_by: uuid.UUID | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_at: datetime
    fields: list[FieldPublic]


class SchemaPage(Page[SchemaPublic]):
    """A page of schemas."""
