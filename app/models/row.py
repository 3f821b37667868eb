"""Dataset rows: an image, its hash and the field values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import id_field, timestamp_field, user_ref_field

RowStatus = Literal["pending", "reviewed"]


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
