"""Reading records that belong to a team: one by id, or one page, always scoped in the query.

The team goes in the `WHERE` clause itself, so another team's id finds nothing (404), exactly
like an id that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import func
from sqlalchemy.sql.base import ExecutableOption
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import NotFoundException
from app.common.pagination import PageParams


class TeamOwned(Protocol):
    """A table class with `id` and `team_id` columns."""

    id: Any
    team_id: Any


ModelT = TypeVar("ModelT", bound=SQLModel)


async def get_owned(
    session: AsyncSession,
    model: type[ModelT],
    *,
    team_id: uuid.UUID,
    record_id: uuid.UUID,
    not_found: str,
    lock: bool = False,
    options: Sequence[ExecutableOption] = (),
) -> ModelT:
    """The team's record of `model` with this id; with `lock`, locked until the transaction ends.

    `options` are loader options, such as the relationships to load with the record.

    Raises:
        NotFoundException: with `not_found` when no such record is in this team.
    """
    columns = cast(TeamOwned, model)
    query = (
        select(model).options(*options).where(columns.id == record_id, columns.team_id == team_id)
    )
    if lock:
        query = query.with_for_update()
    record = (await session.exec(query)).first()
    if record is None:
        raise NotFoundException(not_found)
    return record


async def page_where(
    session: AsyncSession,
    model: type[ModelT],
    *,
    where: Sequence[Any],
    order_by: tuple[Any, ...],
    params: PageParams,
    options: Sequence[ExecutableOption] = (),
) -> tuple[list[ModelT], int]:
    """One page of the records of `model` matching every condition of `where`, in the given
    order (ties must be broken by id), and their total count: two statements whatever the page
    holds, plus one per relationship that `options` load with `selectinload`.
    """
    total = (await session.exec(select(func.count()).select_from(model).where(*where))).one()
    records = (
        await session.exec(
            select(model)
            .options(*options)
            .where(*where)
            .order_by(*order_by)
            .offset(params.offset)
            .limit(params.page_size)
        )
    ).all()
    return list(records), total


async def page_owned(
    session: AsyncSession,
    model: type[ModelT],
    *,
    team_id: uuid.UUID,
    order_by: tuple[Any, ...],
    params: PageParams,
    options: Sequence[ExecutableOption] = (),
) -> tuple[list[ModelT], int]:
    """One page of the team's records (see `page_where`)."""
    columns = cast(TeamOwned, model)
    return await page_where(
        session,
        model,
        where=(columns.team_id == team_id,),
        order_by=order_by,
        params=params,
        options=options,
    )
