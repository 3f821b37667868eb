"""Reading a row's history (written by triggers, see `app.models.row_history`)."""

from __future__ import annotations

import uuid

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.pagination import Page, PageParams
from app.models.row_history import RowHistory, RowHistoryEntry
from app.models.user import User
from app.services import dataset_service


async def row_history(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    params: PageParams,
) -> Page[RowHistoryEntry]:
    """A page of the row's history, newest first; a deleted row's history is still there.

    Raises:
        NotFoundException: when the dataset is not in the caller's team (an id that never was a
            row of it gives an empty page).
    """
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    scope = (col(RowHistory.dataset_id) == dataset.id, col(RowHistory.row_id) == row_id)
    total = (await session.exec(select(func.count()).select_from(RowHistory).where(*scope))).one()
    rows = (
        await session.exec(
            select(RowHistory, User.email)
            .outerjoin(User, col(User.id) == col(RowHistory.changed_by))
            .where(*scope)
            .order_by(col(RowHistory.id).desc())
            .offset(params.offset)
            .limit(params.page_size)
        )
    ).all()
    entries = [
        RowHistoryEntry(
            id=entry.id or 0,
            row_id=entry.row_id,
            action=entry.action,
            changed_by=entry.changed_by,
            changed_by_email=email,
            changed_at=entry.changed_at,
            changes=entry.changes,
        )
        for entry, email in rows
    ]
    return Page[RowHistoryEntry].build(entries, total, params)
