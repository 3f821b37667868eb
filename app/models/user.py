"""Users and the records that login throttling keeps."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, Index, String
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Email, Password
from app.models.base import RequestModel, id_field, lower, timestamp_field

Role = Literal["admin", "user"]
EMAIL_UNIQUE_KEY = "users_email_key"
"""Unique index on lower(email): emails are unique across the instance, ignoring case."""


class UserBase(SQLModel):
    """The leading columns of a user's public shape, in the order the API shows them."""

    id: uuid.UUID
    email: str = Field(sa_type=String(254))
    role: Role = Field(sa_type=String(10))
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)


class User(UserBase, table=True):
    __tablename__ = "users"
    __table_args__ = (
        Index(EMAIL_UNIQUE_KEY, lower("email"), unique=True),
        Index("users_team_email_idx", "team_id", "email"),
        CheckConstraint("role IN ('admin', 'user')", name="users_role_check"),
        CheckConstraint("credential_version >= 0", name="users_credential_version_check"),
    )

    id: uuid.UUID = id_field()
    password_hash: str = Field(max_length=255)
    must_reset_pwd: bool = False
    credential_version: int = 0
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class UserPublic(UserBase):
    """A user as the API shows it: never the password hash."""

    must_reset_pwd: bool
    created_at: datetime
    updated_at: datetime


class LoginFailure(SQLModel, table=True):
    """One failed login; throttling counts recent ones per email and per client address."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("login_failures_email_idx", "email", "attempted_at"),
        Index("login_failures_client_idx", "client_ip", "attempted_at"),
        Index("login_failures_time_idx", "attempted_at"),
    )

    id: uuid.UUID = id_field()
    email: str = Field(max_length=254)
    client_ip: str = Field(max_length=64)
    attempted_at: datetime = timestamp_field()


class UserCreate(RequestModel):
    """An admin adds a member to their team; without `password` one is generated."""

    email: Email
    role: Role
    password: Password | None = None


class UserCreated(SQLModel):
    """The new user and the initial password, shown this once."""

    user: UserPublic
    temp_password: str


class UserUpdate(RequestModel):
    role: Role


class TempPassword(SQLModel):
    temp_password: str


class UserPage(Page[UserPublic]):
    """A page of users."""
