"""Schemas and their typed fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Column, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Description, JsonObject, Name
from app.models.base import RequestModel, id_field, timestamp_field, user_ref_field
from app.services.field_types import TEXT_MAX_LENGTH_LIMIT

FieldType = Literal["boolean", "text", "numeric", "enum"]


class Schema(SQLModel, table=True):
    __tablename__ = "schemas"

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    created_by: uuid.UUID | None = user_ref_field()
    updated_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class SchemaField(SQLModel, table=True):
    __tablename__ = "schema_fields"

    id: uuid.UUID = id_field()
    schema_id: uuid.UUID = Field(foreign_key="schemas.id", ondelete="CASCADE", nullable=False)
    name: str = Field(max_length=100)
    type: str = Field(sa_type=String(10))
    required: bool = False
    default_value: str | None = Field(default=None, sa_type=Text)
    position: int = 0
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


MAX_FIELDS = 200


class FieldCreate(RequestModel):
    """A field as a client defines it. `default_value` is text, parsed like a CSV cell."""

    name: Name
    type: FieldType
    required: bool = False
    default_value: str | None = Field(default=None, max_length=TEXT_MAX_LENGTH_LIMIT)
    position: int = Field(ge=0, le=1_000_000)
    config: JsonObject | None = None


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


class FieldPublic(SQLModel):
    id: uuid.UUID
    schema_id: uuid.UUID
    name: str
    type: FieldType
    required: bool
    default_value: str | None
    position: int
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SchemaPublic(SQLModel):
    id: uuid.UUID
    name: str
    description: str | None
    team_id: uuid.UUID
    created_by: uuid.UUID | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_at: datetime
    fields: list[FieldPublic]


class SchemaPage(Page[SchemaPublic]):
    """A page of schemas."""
