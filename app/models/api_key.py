"""API keys: long-lived credentials for scripts, each with scopes and an optional expiry.

A key is `ait_` and 40 URL-safe random characters, shown once; only its SHA-256 is stored (a
key of that entropy needs no slow hash) with its first characters (`prefix`) to recognise it.
Scopes build on each other: `read` allows GET and HEAD, `write` every method, `admin` the admin
routes too; a key's scopes never exceed its user's role.
"""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field as PydanticField
from sqlalchemy import Column, DateTime, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Name
from app.models.base import RequestModel, id_field, timestamp_field

ApiKeyScope = Literal["read", "write", "admin"]
KEY_PREFIX = "ait_"
SHOWN_PREFIX_LENGTH = 12


class ApiKeyBase(SQLModel):
    """The leading columns of a key's public shape, in the order the API shows them."""

    id: uuid.UUID
    name: str = Field(sa_type=String(100))
    prefix: str = Field(sa_type=String(16), description="The key's first characters")
    scopes: list[ApiKeyScope] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(
        sa_type=DateTime(timezone=True), description="Updated at most once a minute"
    )
    revoked_at: datetime | None = Field(sa_type=DateTime(timezone=True))


class ApiKey(ApiKeyBase, table=True):
    """A user's key; deleting the user deletes their keys."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("api_keys_hash_key", "key_hash", unique=True),
        Index("api_keys_user_idx", "user_id", "created_at"),
    )

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False)
    key_hash: str = Field(sa_type=String(64))
    scopes: list[ApiKeyScope] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_field()
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ApiKeyCreate(RequestModel):
    """A new key for the caller."""

    name: Name
    scopes: Annotated[list[ApiKeyScope], PydanticField(min_length=1, max_length=3)]
    expires_at: datetime | None = Field(
        default=None, description="When the key stops working (UTC if no offset); none: never"
    )


class ApiKeyPublic(ApiKeyBase):
    """A key as the API shows it (never with its secret)."""


class ApiKeyCreated(ApiKeyPublic):
    """A new key, with its secret (shown this once)."""

    key: str = Field(description="`ait_...`: send it as `Authorization: Bearer <key>`")


class ApiKeyPage(Page[ApiKeyPublic]):
    """A page of the caller's keys, newest first."""
