"""Datasets of a team."""

from __future__ import annotations

import uuid

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.db_errors import duplicates_as_errors
from app.common.pagination import Page, PageParams
from app.models.base import changes_of, utcnow
from app.models.dataset import NAME_UNIQUE_KEY, Dataset, DatasetCreate, DatasetUpdate
from app.models.user import User
from app.services import row_actor, webhook_events
from app.services.schema_service import get_schema_row
from app.services.team_scope import get_owned, page_owned

NAME_TAKEN = {NAME_UNIQUE_KEY: "A dataset with this name already exists"}


async def get_dataset(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID, lock: bool = False
) -> Dataset:
    """The team's dataset; with `lock`, locked for update until the transaction ends.

    Raises:
        NotFoundException: when no such dataset is in this team.
    """
    return await get_owned(
        session,
        Dataset,
        team_id=team_id,
        record_id=dataset_id,
        not_found="Dataset not found",
        lock=lock,
    )


async def list_datasets(
    session: AsyncSession, *, team_id: uuid.UUID, params: PageParams
) -> Page[Dataset]:
    """A page of the team's datasets, newest first.

    Two statements whatever the page holds: the counters are columns of the dataset, kept
    exact by triggers, so no row is counted here.
    """
    datasets, total = await page_owned(
        session,
        Dataset,
        team_id=team_id,
        order_by=(col(Dataset.created_at).desc(), col(Dataset.id).desc()),
        params=params,
    )
    return Page[Dataset].build(datasets, total, params)


async def create_dataset(session: AsyncSession, *, user: User, data: DatasetCreate) -> Dataset:
    """Create a dataset bound to one of the team's schemas.

    Raises:
        NotFoundException: when the schema is not in this team.
        DuplicateException: when the team has a dataset of this name (any case).
    """
    await get_schema_row(session, team_id=user.team_id, schema_id=data.schema_id)
    dataset = Dataset(
        team_id=user.team_id,
        schema_id=data.schema_id,
        name=data.name,
        description=data.description,
        created_by=user.id,
        updated_by=user.id,
    )
    async with duplicates_as_errors(session, NAME_TAKEN):
        session.add(dataset)
        await session.commit()
    return dataset


async def update_dataset(
    session: AsyncSession, *, user: User, dataset_id: uuid.UUID, data: DatasetUpdate
) -> Dataset:
    """Rename or re-describe a dataset.

    Raises:
        NotFoundException: when the dataset is not in this team.
        DuplicateException: when the new name is taken in the team.
    """
    dataset = await get_dataset(session, team_id=user.team_id, dataset_id=dataset_id, lock=True)
    dataset.sqlmodel_update(changes_of(data, kept_when_null={"name"}))
    dataset.updated_by, dataset.updated_at = user.id, utcnow()
    async with duplicates_as_errors(session, NAME_TAKEN):
        session.add(dataset)
        await session.commit()
    await session.refresh(dataset)
    return dataset


async def delete_dataset(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID
) -> None:
    """Delete a dataset and all its rows (the rows raise no `row.deleted`; the dataset raises
    `dataset.deleted`)."""
    dataset = await get_dataset(session, team_id=team_id, dataset_id=dataset_id, lock=True)
    await webhook_events.emit(
        session,
        team_id=team_id,
        event="dataset.deleted",
        data={"dataset_id": dataset.id, "name": dataset.name},
    )
    await row_actor.skip_history(session)
    await session.delete(dataset)
    await session.commit()
