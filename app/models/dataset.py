"""Datasets: collections of rows bound to one schema."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, desc
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Description, Name
from app.models.base import RequestModel, id_field, lower, timestamp_field, user_ref_field

NAME_UNIQUE_KEY = "datasets_team_name_key"
"""Unique index on (team_id, lower(name)): dataset names are unique per team, ignoring case."""


class DatasetBase(SQLModel):
    """The leading columns of a dataset's public shape, in the order the API shows them."""

    id: uuid.UUID
    name: str = Field(sa_type=String(100))


class Dataset(DatasetBase, table=True):
    __tablename__ = "datasets"
    __table_args__ = (
        Index(NAME_UNIQUE_KEY, "team_id", lower("name"), unique=True),
        Index("datasets_team_created_idx", "team_id", desc("created_at"), desc("id")),
        Index("datasets_schema_idx", "schema_id"),
        CheckConstraint("rows_count >= 0", name="datasets_rows_count_check"),
        CheckConstraint("pending_count >= 0", name="datasets_pending_count_check"),
    )

    id: uuid.UUID = id_field()
    description: str | None = Field(default=None, max_length=500)
    schema_id: uuid.UUID = Field(foreign_key="schemas.id", nullable=False)
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
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


class DatasetPublic(DatasetBase):
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
