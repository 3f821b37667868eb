"""Teams: the unit of isolation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from app.common.validation import Name
from app.models.base import RequestModel, id_field, timestamp_field


class TeamBase(SQLModel):
    name: str = Field(min_length=1, max_length=100)


class Team(TeamBase, table=True):
    __tablename__ = "teams"

    id: uuid.UUID = id_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class TeamPublic(TeamBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class TeamUpdate(RequestModel):
    name: Name
