"""Thumbnails of row images, made once and kept in PostgreSQL so that every host serves them."""

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, String
from sqlmodel import Field, SQLModel


class RowThumbnail(SQLModel, table=True):
    """One size of one row's image; `image_hash` is the image it was made from (a row whose
    image changed gets a new one)."""

    __tablename__ = "row_thumbnails"

    row_id: uuid.UUID = Field(foreign_key="dataset_rows.id", ondelete="CASCADE", primary_key=True)
    size: int = Field(primary_key=True)
    image_hash: str = Field(sa_type=String(32))
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
