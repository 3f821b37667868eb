"""The history of a row: every creation, change (values, status, image) and deletion.

Entries are written by the database itself, by statement-level triggers on `dataset_rows`
(revision 0009), so every path that changes a row (the API, imports, bulk updates, schema
changes that drop a field's values) records it in the same transaction as the change. Who made
a change is the row's `updated_by`, or the actor a service named for its transaction (deletes
and schema changes, see `app.services.row_history`). A deleted row's history stays, until its
dataset is deleted.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Identity, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page

RowAction = Literal["create", "update", "delete"]


class RowHistory(SQLModel, table=True):
    """One entry; `changes` is the whole row for `create`/`delete`, and for `update` each
    changed key as `[old, new]` (`data` per field id)."""

    __tablename__ = "row_history"
    __table_args__ = (
        CheckConstraint(
            "action IN ('create', 'update', 'delete')", name="row_history_action_check"
        ),
        Index("row_history_row_idx", "dataset_id", "row_id", "id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    row_id: uuid.UUID
    dataset_id: uuid.UUID = Field(foreign_key="datasets.id", ondelete="CASCADE", nullable=False)
    action: RowAction = Field(sa_type=String(16))
    changed_by: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", nullable=True
    )
    changed_at: datetime = Field(sa_type=DateTime(timezone=True))
    changes: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))


class RowHistoryEntry(SQLModel):
    id: int
    row_id: uuid.UUID
    action: RowAction
    changed_by: uuid.UUID | None
    changed_by_email: str | None = Field(description="While that user exists")
    changed_at: datetime
    changes: dict[str, Any] = Field(
        description="create/delete: the row's `image_url`, `image_hash`, `status` and `data`; "
        "update: each changed key as `[old, new]`, `data` as field id → `[old, new]`"
    )


class RowHistoryPage(Page[RowHistoryEntry]):
    """A page of a row's history, newest first."""
