"""Background imports: the job, its file split into parts, and every invalid record it met.

An uploaded file is kept in PostgreSQL as parts of whole records (`import_job_parts`, the
bytes as uploaded), so a worker on any host can run any part. Each part is one job of the
queue (pgqueuer); its `done_through_line` is where its committed batches end, so a part
retried after a crash resumes there. The job's counters are updated in the same transaction
as each batch, which keeps them exact whatever stops a worker.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    SmallInteger,
    String,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.models.base import id_field, timestamp_field, user_ref_field, utcnow

ImportState = Literal["queued", "running", "done", "failed", "cancelled"]
IMPORT_STATES: tuple[ImportState, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATES: tuple[ImportState, ...] = ("done", "failed", "cancelled")


class ImportJobBase(SQLModel):
    """The leading columns of a job's public shape, in the order the API shows them."""

    id: uuid.UUID
    dataset_id: uuid.UUID = Field(foreign_key="datasets.id", ondelete="CASCADE", nullable=False)
    format: str = Field(sa_type=String(8), description="csv or jsonl")
    file_name: str | None = Field(sa_type=String(255))
    file_bytes: int
    mark_all_pending: bool
    skip_near_duplicates: int | None = Field(
        default=None, sa_type=SmallInteger, description="The import's near-duplicate distance"
    )
    state: ImportState = Field(sa_type=String(16))
    total: int = Field(description="Records (non-blank lines or CSV records) in the file")
    processed: int = Field(description="Records handled so far (imported, duplicate or invalid)")
    imported: int
    skipped_duplicates: int
    skipped_invalid: int
    error: str | None = Field(
        sa_type=String(1000), description="Why the job failed, when it did (state failed)"
    )
    created_by: uuid.UUID | None
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    started_at: datetime | None = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(sa_type=DateTime(timezone=True))


class ImportJob(ImportJobBase, table=True):
    """One background import; `team_id` scopes every query on it."""

    __tablename__ = "import_jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name="import_jobs_state_check",
        ),
        Index("import_jobs_dataset_idx", "dataset_id", "created_at", "id"),
        Index("import_jobs_team_idx", "team_id", "id"),
    )

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    column_mapping: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    header: str | None = Field(
        default=None, description="The CSV header's raw text, given to every part"
    )
    parts_total: int = 0
    parts_done: int = 0
    created_at: datetime = timestamp_field()
    file_name: str | None = Field(default=None, sa_type=String(255))
    state: ImportState = Field(default="queued", sa_type=String(16))
    processed: int = 0
    imported: int = 0
    skipped_duplicates: int = 0
    skipped_invalid: int = 0
    error: str | None = Field(default=None, sa_type=String(1000))
    created_by: uuid.UUID | None = user_ref_field()
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))

    @property
    def rate(self) -> float:
        """Records processed per second, from the start to the end (or to now)."""
        if self.started_at is None or not self.processed:
            return 0.0
        seconds = ((self.finished_at or utcnow()) - self.started_at).total_seconds()
        return round(self.processed / max(seconds, 0.001), 1)


class ImportJobPart(SQLModel, table=True):
    """A run of whole records of the file, imported by one queue job."""

    __tablename__ = "import_job_parts"

    job_id: uuid.UUID = Field(foreign_key="import_jobs.id", ondelete="CASCADE", primary_key=True)
    part: int = Field(primary_key=True)
    first_line: int
    records: int
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    done_through_line: int = Field(
        default=0, description="The last line of the part's committed batches (0: none yet)"
    )
    finished: bool = False


class ImportJobError(SQLModel, table=True):
    """Why one record of the file was not imported."""

    __tablename__ = "import_job_errors"

    job_id: uuid.UUID = Field(foreign_key="import_jobs.id", ondelete="CASCADE", primary_key=True)
    line: int = Field(primary_key=True, description="CSV: the line the record starts on")
    message: str


class ImportJobPublic(ImportJobBase):
    """A background import as the API shows it."""

    rate: float = Field(description="Records processed per second since the job started")


class ImportErrorPublic(SQLModel):
    line: int
    message: str


class ImportErrorPage(Page[ImportErrorPublic]):
    """A page of an import's errors, in line order."""


class ImportJobPage(Page[ImportJobPublic]):
    """A page of a dataset's imports, newest first."""
