"""FastAPI dependencies shared by the routes, declared once as annotated types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.database import session_scope
from app.common.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    """The settings the running app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One database session per request, rolled back if left uncommitted."""
    async for session in session_scope(request.app.state.sessionmaker):
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
