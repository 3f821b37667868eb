"""Users and the records that login throttling keeps."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Email, Password
from app.models.base import RequestModel, id_field, timestamp_field

Role = Literal["admin", "user"]


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    email: str = Field(max_length=254)
    password_hash: str = Field(max_length=255)
    role: str = Field(sa_type=String(10))
    must_reset_pwd: bool = False
    credential_version: int = 0
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class UserPublic(SQLModel):
    """A user as the API shows it: never the password hash."""

    id: uuid.UUID
    email: str
    role: Role
    team_id: uuid.UUID
    must_reset_pwd: bool
    created_at: datetime
    updated_at: datetime


class LoginFailure(SQLModel, table=True):
    """One failed login; throttling counts recent ones per email and per client address."""

    __tablename__ = "login_failures"

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
