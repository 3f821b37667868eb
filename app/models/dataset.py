"""Datasets: collections of rows bound to one schema."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Description, Name
from app.models.base import RequestModel, id_field, timestamp_field, user_ref_field


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


class DatasetCreate(RequestModel):
    name: Name
    description: Description | None = None
    schema_id: uuid.UUID


class DatasetUpdate(RequestModel):
    """Changes to a dataset; its schema cannot change."""

    name: Name | None = None
    description: Description | None = None


class DatasetPublic(SQLModel):
    id: uuid.UUID
    name: str
    description: str | None
    schema_id: uuid.UUID
    team_id: uuid.UUID
    created_by: uuid.UUID | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_at: datetime
    rows_count: int
    pending_count: int


class DatasetPage(Page[DatasetPublic]):
    """A page of datasets."""
