"""Dataset rows: an image, its hash and the field values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import ColumnMapping, ImageUrl, JsonObject
from app.models.base import RequestModel, id_field, timestamp_field, user_ref_field

RowStatus = Literal["pending", "reviewed"]
MAX_BULK_IDS = 1000


class DatasetRow(SQLModel, table=True):
    __tablename__ = "dataset_rows"

    id: uuid.UUID = id_field()
    dataset_id: uuid.UUID = Field(foreign_key="datasets.id", ondelete="CASCADE", nullable=False)
    image_url: str = Field(max_length=2048)
    image_hash: str = Field(max_length=32)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    status: str = Field(sa_type=String(10))
    created_by: uuid.UUID | None = user_ref_field()
    updated_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class RowCreate(RequestModel):
    """A new row: the image is downloaded and hashed; `data` maps field id → value."""

    image_url: ImageUrl
    data: JsonObject | None = None


class RowUpdate(RequestModel):
    """Changes to a row; `data`, when given, replaces the whole map."""

    image_url: ImageUrl | None = None
    data: JsonObject | None = None
    status: RowStatus | None = None


class RowPublic(SQLModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    image_url: str
    image_hash: str
    data: dict[str, Any]
    status: RowStatus
    created_by: uuid.UUID | None
    created_by_email: str | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_by_email: str | None
    updated_at: datetime


class RowPage(Page[RowPublic]):
    """A page of rows."""


RowIds = Annotated[list[uuid.UUID], Field(max_length=MAX_BULK_IDS)]


class BulkStatusUpdate(RequestModel):
    row_ids: RowIds
    status: RowStatus


class BulkRowIds(RequestModel):
    row_ids: RowIds


RowSort = Literal["created_at", "-created_at", "updated_at", "-updated_at"]


class ImportRequest(RequestModel):
    """CSV import given inline (JSON form)."""

    file_content: str = Field(description="The CSV text: UTF-8, comma-separated, header first")
    column_mapping: ColumnMapping = Field(
        description='`"image_url"` (required) and field ids → CSV column names; "" = not mapped'
    )
    mark_all_pending: bool = False


class ImportMapping(RequestModel):
    """The mapping part of a multipart import (the `column_mapping` form field, as JSON)."""

    column_mapping: ColumnMapping


class ImportResult(SQLModel):
    imported: int
    skipped_duplicates: int
    skipped_invalid: int
    errors: list[str]


ExportFormat = Literal["csv", "jsonl"]
