"""Image backfills: re-fetching the images of a dataset's rows to record their facts.

Rows stored before image facts were recorded (revision 0011) have none. A backfill walks the
dataset's rows that still lack them, in creation order, re-downloads each image through the safe
fetcher and, when the bytes are still those of the row (same MD5), stores the width, height,
format, file size and perceptual hash. `resume_created_at`/`resume_id` is where its committed
batches end, so a backfill picked again after a crash continues there.
"""

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, DateTime, Index, String, text
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.models.base import id_field, timestamp_field, user_ref_field

BackfillState = Literal["queued", "running", "done", "failed"]
ACTIVE_BACKFILL_KEY = "image_backfills_active_key"
"""Unique index: at most one queued or running backfill per dataset."""


class ImageBackfillBase(SQLModel):
    """The public shape of a backfill, in the order the API shows it."""

    id: uuid.UUID
    dataset_id: uuid.UUID = Field(foreign_key="datasets.id", ondelete="CASCADE", nullable=False)
    state: BackfillState = Field(sa_type=String(10))
    total: int = Field(description="Rows without image facts when the backfill was queued")
    processed: int = Field(description="Rows handled so far")
    updated: int = Field(description="Rows whose image facts were recorded")
    changed: int = Field(
        description="Rows left without facts because their URL now serves another image"
    )
    failed: int = Field(
        description="Rows left without facts because the image could not be fetched or decoded"
    )
    error: str | None = Field(sa_type=String(1000), description="Why the backfill failed")
    requested_by: uuid.UUID | None = Field(
        description="Who started it; null for the backfill queued by the upgrade"
    )
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    started_at: datetime | None = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(sa_type=DateTime(timezone=True))


class ImageBackfill(ImageBackfillBase, table=True):
    """One backfill of one dataset; `team_id` scopes every query on it."""

    __tablename__ = "image_backfills"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')",
            name="image_backfills_state_check",
        ),
        Index("image_backfills_dataset_idx", "dataset_id", "created_at"),
        Index("image_backfills_team_idx", "team_id", "id"),
        Index(
            ACTIVE_BACKFILL_KEY,
            "dataset_id",
            unique=True,
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    state: BackfillState = Field(default="queued", sa_type=String(10))
    total: int = 0
    processed: int = 0
    updated: int = 0
    changed: int = 0
    failed: int = 0
    resume_created_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    resume_id: uuid.UUID | None = None
    error: str | None = Field(default=None, sa_type=String(1000))
    requested_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ImageBackfillPublic(ImageBackfillBase):
    pass


class ImageBackfillPage(Page[ImageBackfillPublic]):
    """A page of a dataset's image backfills, newest first."""
