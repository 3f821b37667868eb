"""Datasets: collections of rows bound to one schema."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from app.models.base import id_field, timestamp_field, user_ref_field


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    schema_id: uuid.UUID = Field(foreign_key="schemas.id", nullable=False)
    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    rows_count: int = Field(default=0, sa_type=BigInteger)
    pending_count: int = Field(default=0, sa_type=BigInteger)
    created_by: uuid.UUID | None = user_ref_field()
    updated_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
