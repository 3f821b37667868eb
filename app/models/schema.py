"""Schemas and their typed fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Column, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import id_field, timestamp_field, user_ref_field

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
