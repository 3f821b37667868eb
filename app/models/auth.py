"""Request and response bodies of setup and authentication."""

from __future__ import annotations

import uuid

from sqlmodel import Field, SQLModel

from app.common.validation import AnyPassword, Email, LoginEmail, Name, Password
from app.models.base import RequestModel
from app.models.user import UserPublic

DEFAULT_TEAM_NAME = "My Team"


class SetupStatus(SQLModel):
    needs_setup: bool


class SetupInit(RequestModel):
    email: Email
    password: Password
    team_name: Name = DEFAULT_TEAM_NAME


class SetupResult(SQLModel):
    message: str
    team_id: uuid.UUID
    user_id: uuid.UUID


class LoginRequest(RequestModel):
    email: LoginEmail
    password: AnyPassword
    remember_me: bool = False


class LoginResult(SQLModel):
    user: UserPublic
    must_reset_pwd: bool


class AccessToken(SQLModel):
    access_token: str
    token_type: str = Field(default="bearer")


class Message(SQLModel):
    message: str


class PasswordChange(RequestModel):
    old_password: AnyPassword
    new_password: Password


class PasswordReset(RequestModel):
    new_password: Password


class SignupRequest(RequestModel):
    email: Email
    password: Password
    team_name: Name
