"""Dataset rows: an image, its hash and the field values."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import field_validator
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    String,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Relationship, SQLModel

from app.common.pagination import CursorPage
from app.common.validation import ColumnMapping, ImageUrl, JsonObject
from app.domain.images import hash_hex
from app.models.base import RequestModel, id_field, timestamp_field, user_ref_field
from app.models.user import User

RowStatus = Literal["pending", "reviewed"]
DataKeys = Literal["id", "name"]
"""How a row's `data` is keyed in a response: by field id (as stored) or by field name."""
FileFormat = Literal["csv", "jsonl"]
"""The file formats rows are imported from and exported to: CSV, or JSON Lines."""
IMAGE_UNIQUE_KEY = "dataset_rows_dataset_image_key"
"""Unique constraint on (dataset_id, image_hash): one image at most once per dataset."""
MAX_BULK_IDS = 1000
SKIP_NEAR_DUPLICATES = """Also skip images within this many bits (0-16) of the perceptual hash of
an image already in the dataset or earlier in the file; they count in `skipped_duplicates`.
Absent: only identical images (same MD5) are skipped."""
ROW_WORDS = "to_tsvector('simple'::regconfig, aitrace_row_words(data))"
"""The words the full-text search `q` looks in, through the index `dataset_rows_words_idx` (the
query must use this very expression); `aitrace_row_words` is created by revision 0003."""
STRING_VALUES = "jsonb_path_query_array(data, 'strict $.* ? (@.type() == \"string\")'::jsonpath)"
"""The string values of a row's `data` as a JSON array: what `contains` pre-filters on, through
the trigram index `dataset_rows_text_trgm_idx` (an expression of the query must be the index's)."""
HASH_BANDS = 4
"""The 64-bit perceptual hash is indexed as 4 bands of 16 bits (multi-index hashing): two hashes
within Hamming distance d agree to within d // 4 bits on at least one band."""
BAND_BITS = 16


def hash_band(band: int) -> str:
    """The SQL expression of band `band` (0 = lowest 16 bits) of `image_dhash`; the near-duplicate
    queries must use this very expression to reach the band's index."""
    return f"((image_dhash >> {band * BAND_BITS}) & {(1 << BAND_BITS) - 1})"


BAND_INCLUDE = ("image_dhash", "created_at", "id")
"""What each band index carries besides its key: a search reads only the indexes (index-only
scans), never the table, to check each candidate's whole hash."""


def _hash_band_index(band: int) -> Index:
    return Index(
        f"dataset_rows_dhash_band{band}_idx",
        "dataset_id",
        text(hash_band(band)),
        postgresql_include=list(BAND_INCLUDE),
        postgresql_where=text("image_dhash IS NOT NULL"),
    )


class RowBase(SQLModel):
    """The leading columns of a row's public shape, in the order the API shows them."""

    id: uuid.UUID
    dataset_id: uuid.UUID = Field(foreign_key="datasets.id", ondelete="CASCADE", nullable=False)
    image_url: str = Field(sa_type=String(2048))
    image_hash: str = Field(sa_type=String(32))
    image_width: int | None = Field(default=None, description="Width in pixels")
    image_height: int | None = Field(default=None, description="Height in pixels")
    image_format: str | None = Field(
        default=None,
        sa_type=String(8),
        description="png, jpeg, gif, webp, bmp, tiff, avif or heif",
    )
    image_bytes: int | None = Field(
        default=None, sa_type=BigInteger, description="Size of the image file in bytes"
    )


class DatasetRow(RowBase, table=True):
    """A row; `creator` and `updater` are loaded only on request (see `row_service`)."""

    __tablename__ = "dataset_rows"
    __table_args__ = (
        UniqueConstraint("dataset_id", "image_hash", name=IMAGE_UNIQUE_KEY),
        Index("dataset_rows_updated_idx", "dataset_id", "updated_at", "id"),
        Index("dataset_rows_created_idx", "dataset_id", "created_at", "id"),
        Index("dataset_rows_status_updated_idx", "dataset_id", "status", "updated_at", "id"),
        Index("dataset_rows_status_created_idx", "dataset_id", "status", "created_at", "id"),
        Index(
            "dataset_rows_unclaimed_idx",
            "dataset_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending' AND claimed_by IS NULL"),
        ),
        Index(
            "dataset_rows_leased_idx",
            "dataset_id",
            "claim_expires_at",
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
        Index(
            "dataset_rows_data_idx",
            "data",
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
        ),
        Index(
            "dataset_rows_words_idx",
            text(ROW_WORDS),
            postgresql_using="gin",
        ),
        Index(
            "dataset_rows_text_trgm_idx",
            literal_column(f"({STRING_VALUES})::text").label("string_values"),
            postgresql_using="gin",
            postgresql_ops={"string_values": "gin_trgm_ops"},
        ),
        Index(
            "dataset_rows_url_trgm_idx",
            "image_url",
            postgresql_using="gin",
            postgresql_ops={"image_url": "gin_trgm_ops"},
        ),
        Index("dataset_rows_image_size_idx", "dataset_id", "image_width", "image_height"),
        *(_hash_band_index(band) for band in range(HASH_BANDS)),
        CheckConstraint("image_hash ~ '^[0-9a-f]{32}$'", name="dataset_rows_image_hash_check"),
        CheckConstraint("status IN ('pending', 'reviewed')", name="dataset_rows_status_check"),
    )

    id: uuid.UUID = id_field()
    image_dhash: int | None = Field(default=None, sa_type=BigInteger)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    status: RowStatus = Field(sa_type=String(10))
    created_by: uuid.UUID | None = user_ref_field()
    updated_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    claimed_by: uuid.UUID | None = user_ref_field()
    claim_expires_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True), nullable=True
    )
    creator: User | None = Relationship(
        sa_relationship_kwargs={"lazy": "raise", "foreign_keys": "[DatasetRow.created_by]"}
    )
    updater: User | None = Relationship(
        sa_relationship_kwargs={"lazy": "raise", "foreign_keys": "[DatasetRow.updated_by]"}
    )

    @property
    def created_by_email(self) -> str | None:
        """The email of the user who created the row, while that user exists."""
        return None if self.creator is None else self.creator.email

    @property
    def updated_by_email(self) -> str | None:
        """The email of the user who last changed the row, while that user exists."""
        return None if self.updater is None else self.updater.email


class RowCreate(RequestModel):
    """A new row: the image is downloaded and hashed; `data` maps field id or name → value."""

    image_url: ImageUrl
    data: JsonObject | None = None


class RowUpdate(RequestModel):
    """Changes to a row; `data`, when given, replaces the whole map."""

    image_url: ImageUrl | None = None
    data: JsonObject | None = None
    status: RowStatus | None = None


class RowPatch(RowUpdate):
    """Changes to part of a row; `data` is merged into the stored values key by key.

    A key mapped to `null` (or `""`) unsets that field; keys left out keep their values.
    """


class RowPublic(RowBase):
    image_dhash: str | None = Field(
        default=None,
        description="The image's 64-bit perceptual hash (dHash), 16 hex digits; rows whose image "
        "was stored before it was recorded have none until an image backfill",
    )
    data: dict[str, Any]
    status: RowStatus
    created_by: uuid.UUID | None
    created_by_email: str | None
    created_at: datetime
    updated_by: uuid.UUID | None
    updated_by_email: str | None
    updated_at: datetime
    claimed_by: uuid.UUID | None = Field(
        default=None, description="The reviewer whose lease on the row may still run (see claim)"
    )
    claim_expires_at: datetime | None = Field(
        default=None, description="When that lease ends; after it the row is back in the queue"
    )

    @field_validator("image_dhash", mode="before")
    @classmethod
    def _dhash_as_hex(cls, value: object) -> object:
        """The stored (signed 64-bit) hash as 16 hex digits."""
        return hash_hex(value) if isinstance(value, int) else value


MAX_CLAIM = 50
MAX_LEASE_SECONDS = 3600


class ClaimRequest(RequestModel):
    """How many pending rows to take, and for how long."""

    count: int = Field(default=1, ge=1, le=MAX_CLAIM)
    lease_seconds: int = Field(default=600, ge=10, le=MAX_LEASE_SECONDS)


class ClaimedRows(SQLModel):
    """The rows handed to the caller, oldest first; possibly fewer than asked, or none."""

    items: list[RowPublic]


class ReleaseRequest(RequestModel):
    """The caller's claims to give back; all of them in this dataset when `row_ids` is absent."""

    row_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_BULK_IDS)] | None = None


class ReleasedRows(SQLModel):
    released: int = Field(description="How many of the caller's leases ended")


class ReviewerStats(SQLModel):
    user_id: uuid.UUID
    email: str
    reviewed_today: int = Field(
        description="Reviewed rows last changed by this user since 00:00 UTC"
    )
    reviewed_total: int = Field(description="Reviewed rows last changed by this user")


class DatasetStats(SQLModel):
    rows_count: int
    pending_count: int
    claimed_count: int = Field(description="Pending rows under a lease that has not expired")
    reviewers: list[ReviewerStats]


class RowPage(CursorPage[RowPublic]):
    """A page of rows."""


RowIds = Annotated[list[uuid.UUID], Field(max_length=MAX_BULK_IDS)]


class BulkStatusUpdate(RequestModel):
    row_ids: RowIds
    status: RowStatus


class BulkRowIds(RequestModel):
    row_ids: RowIds


RowSort = Literal["created_at", "-created_at", "updated_at", "-updated_at"]


class ImportRequest(RequestModel):
    """Import given inline (JSON form): CSV text, or JSON Lines."""

    file_content: str = Field(
        description="The file's text: CSV (UTF-8, comma-separated, header first) or JSON Lines "
        "(one object per line)"
    )
    format: FileFormat = Field(default="csv", description="csv (the default) or jsonl")
    column_mapping: ColumnMapping | None = Field(
        default=None,
        description='CSV only, required there: `"image_url"` and fields (by id or name) → CSV '
        'column names; "" = not mapped. Absent (or null, {}) with jsonl',
    )
    mark_all_pending: bool = False
    skip_near_duplicates: int | None = Field(
        default=None, ge=0, le=16, description=SKIP_NEAR_DUPLICATES
    )


class ImportMapping(RequestModel):
    """The mapping part of a multipart import (the `column_mapping` form field, as JSON)."""

    column_mapping: ColumnMapping


class JsonlRow(RequestModel):
    """One line of a JSON Lines import.

    The other keys an export writes (`id`, `image_hash`, `created_at`, `updated_at`,
    `created_by_email`, `updated_by_email`, the image facts) are accepted and ignored: an
    imported row gets a new id and timestamps, the importer as author, and the hash and facts
    of the image as fetched.
    """

    image_url: str
    data: JsonObject | None = None
    status: RowStatus | None = None
    id: Any = None
    image_hash: Any = None
    created_at: Any = None
    updated_at: Any = None
    created_by_email: Any = None
    updated_by_email: Any = None
    image_width: Any = None
    image_height: Any = None
    image_format: Any = None
    image_bytes: Any = None
    image_dhash: Any = None


class ImportResult(SQLModel):
    imported: int
    skipped_duplicates: int
    skipped_invalid: int
    errors: list[str]


ExportFormat = FileFormat


class SimilarRow(SQLModel):
    """A row whose image is near another's, and how many of the 64 hash bits differ."""

    distance: int = Field(description="Hamming distance between the two perceptual hashes")
    row: RowPublic


class SimilarRows(SQLModel):
    """The rows near a row's image, nearest first (then oldest first)."""

    items: list[SimilarRow]


class NearDuplicateGroup(SQLModel):
    """A row and the rows created after it whose images are near it, nearest first."""

    row: RowPublic
    near: list[SimilarRow]


class NearDuplicatePage(SQLModel):
    """Groups of near-duplicates in the order their first rows were created."""

    items: list[NearDuplicateGroup]
    next_cursor: str | None = Field(
        description="Give it back as `cursor` for the next groups; null when every row was seen"
    )
    scanned: int = Field(description="Rows this page looked at")
