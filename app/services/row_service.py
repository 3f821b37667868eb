"""Rows of a dataset: create and edit with image hashing, listing, the review queue, bulk work.

Downloading an image can take seconds, so no database transaction is held open during it:
the request is checked in one short transaction, the image is fetched, and the write happens
in a second short transaction that re-reads the schema's fields under a share lock (a
concurrent schema change waits for it, or it for the schema change).

The stored `image_url` is the normalized URL the fetcher requested (trimmed, no fragment,
percent-encoded; see `image_fetch.url_policy.check_url`), never the raw input. An image already in the
dataset is refused with `409 DUPLICATE` whose detail names the row holding it (`row_id`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.db_errors import unique_constraint
from app.common.exceptions import DuplicateException, ErrorDetail, NotFoundException
from app.domain.field_types import FieldRule
from app.models.base import utcnow
from app.models.dataset import Dataset
from app.models.row import (
    IMAGE_UNIQUE_KEY,
    DatasetRow,
    RowCreate,
    RowStatus,
    RowUpdate,
)
from app.models.user import User
from app.services import dataset_service, row_actor, schema_service, webhook_events
from app.services.image_fetch import ImageFetcher, normalize_url
from app.services.row_values import by_field_id, computed_status, validate_data

IMAGE_TAKEN = "This image is already in the dataset"

WITH_AUTHORS = (
    joinedload(DatasetRow.creator),  # type: ignore[arg-type]
    joinedload(DatasetRow.updater),  # type: ignore[arg-type]
)
"""Loads each row's author and last editor (for their emails) by joins in the same statement,
so a page of rows stays one statement."""


async def field_rules(
    session: AsyncSession, dataset: Dataset, *, lock_schema: bool
) -> list[FieldRule]:
    """The validation rules of the dataset's schema.

    With `lock_schema`, the schema row is share-locked until the transaction ends, so the
    fields cannot change between this read and the row write that follows.
    """
    if lock_schema:
        await session.exec(  # type: ignore[call-overload]
            text("SELECT 1 FROM schemas WHERE id = :id FOR KEY SHARE").bindparams(
                id=dataset.schema_id
            )
        )
    fields = await schema_service.get_fields(session, schema_id=dataset.schema_id)
    return [schema_service.rule_of(item) for item in fields]


async def get_row(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID, row_id: uuid.UUID
) -> DatasetRow:
    """One row with its author and last editor, reached only through its own dataset of the
    caller's team.

    Raises:
        NotFoundException: when the row is not in that dataset, or the dataset not in the team.
    """
    query = (
        select(DatasetRow)
        .options(*WITH_AUTHORS)
        .join(Dataset, col(Dataset.id) == col(DatasetRow.dataset_id))
        .where(
            DatasetRow.id == row_id,
            DatasetRow.dataset_id == dataset_id,
            Dataset.team_id == team_id,
        )
    )
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFoundException("Row not found")
    return row


async def _row_record(
    session: AsyncSession, *, dataset_id: uuid.UUID, row_id: uuid.UUID, lock: bool = False
) -> DatasetRow:
    """The row, by id within the dataset; with `lock`, locked and re-read from the database.

    The locked read overwrites what the session loaded earlier (`populate_existing`): without it
    the identity map hands back the values read before the lock, and a merge would build on
    values another transaction has since changed.
    """
    query = select(DatasetRow).where(DatasetRow.id == row_id, DatasetRow.dataset_id == dataset_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFoundException("Row not found")
    return row


async def _row_holding_image(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID, image_hash: str
) -> uuid.UUID | None:
    """The id of the dataset's row with this image, reached only through the caller's team."""
    query = (
        select(DatasetRow.id)
        .join(Dataset, col(Dataset.id) == col(DatasetRow.dataset_id))
        .where(
            DatasetRow.dataset_id == dataset_id,
            DatasetRow.image_hash == image_hash,
            Dataset.team_id == team_id,
        )
    )
    return (await session.exec(query)).first()


async def _save(
    session: AsyncSession,
    row: DatasetRow,
    *,
    team_id: uuid.UUID,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Commit `row`; an image already in the dataset becomes a 409 naming the row holding it.

    `before_commit` runs once the row is written, in its transaction (events about it).

    The unique index on (dataset, image hash) decides, so of concurrent writers of one image
    exactly one wins: the index makes the others wait for the winner's commit, then fail, and
    after their rollback they see the winner's row and name it. Should that row be deleted in
    between, the 409 names no row.

    Raises:
        DuplicateException: when the image is already in the dataset.
    """
    dataset_id, image_hash = row.dataset_id, row.image_hash
    try:
        session.add(row)
        await session.flush()
        if before_commit is not None:
            await before_commit()
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        if unique_constraint(error) != IMAGE_UNIQUE_KEY:
            raise
        holder = await _row_holding_image(
            session, team_id=team_id, dataset_id=dataset_id, image_hash=image_hash
        )
        detail = ErrorDetail(field="image_url", message=IMAGE_TAKEN, row_id=holder)
        raise DuplicateException(IMAGE_TAKEN, details=[detail]) from None


async def create_row(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    user: User,
    dataset_id: uuid.UUID,
    data: RowCreate,
) -> DatasetRow:
    """Create a row: validate `data`, download and hash the image, store both.

    Fields left out or unset that have a `default_value` get it; the status is computed. The
    normalized URL that was requested is stored, not the input as typed.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for invalid values or an image that cannot be fetched.
        PayloadTooLargeException: for an image over `IMAGE_MAX_BYTES`.
        DuplicateException: when the same image (by hash) is already in the dataset; the
            detail names the row holding it.
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    validate_data(
        await field_rules(session, dataset, lock_schema=False), data.data, apply_defaults=True
    )
    await session.commit()
    image = await fetcher.fetch(data.image_url)
    rules = await field_rules(session, dataset, lock_schema=True)
    stored = validate_data(rules, data.data, apply_defaults=True)
    row = DatasetRow(
        dataset_id=dataset.id,
        image_url=image.url,
        image_hash=image.md5,
        data=stored,
        status=computed_status(rules, stored),
        creator=user,
        updater=user,
    )
    row.sqlmodel_update(image.columns())
    await _save(session, row, team_id=user.team_id)
    return row


async def update_row(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    user: User,
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    data: RowUpdate,
    merge: bool = False,
) -> DatasetRow:
    """Change a row's image, values or status.

    `data`, when given, replaces the whole map (with `merge`, it is merged into the stored map
    key by key, `null` unsetting a key) and the status is recomputed from the result, unless an
    explicit `status` is given, which wins. Keys of `data` may be field ids or names; names are
    resolved to ids before the merge. The merge happens on the row as read under its row
    lock, so concurrent changes of different keys all survive. A new `image_url` is downloaded
    and hashed again; a URL whose normalized form is the stored one is unchanged (nothing is
    downloaded). Saving ends the row's review lease, whoever held it.

    Raises:
        NotFoundException: when the row is not in this dataset of the caller's team.
        ValidationException: for invalid values or an image that cannot be fetched.
        PayloadTooLargeException: for an image over `IMAGE_MAX_BYTES`.
        DuplicateException: when the new image is already in the dataset; the detail names
            the row holding it.
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    current = await _row_record(session, dataset_id=dataset.id, row_id=row_id)
    if data.data is not None:
        validate_data(
            await field_rules(session, dataset, lock_schema=False), data.data, apply_defaults=False
        )
    new_url = None if data.image_url is None else normalize_url(data.image_url)
    image = None
    if new_url is not None and new_url != current.image_url:
        await session.commit()
        image = await fetcher.fetch(new_url)
    rules = await field_rules(session, dataset, lock_schema=True)
    row = await _row_record(session, dataset_id=dataset.id, row_id=row_id, lock=True)
    was_reviewed = row.status == "reviewed"
    if image is not None:
        row.image_url = image.url
        row.sqlmodel_update(image.columns())
    if data.data is not None:
        changes = {**row.data, **by_field_id(rules, data.data)} if merge else data.data
        row.data = validate_data(rules, changes, apply_defaults=False)
        row.status = computed_status(rules, row.data)
    if data.status is not None:
        row.status = data.status
    row.updated_by, row.updated_at = user.id, utcnow()
    row.claimed_by = row.claim_expires_at = None
    reviewed = [row.id] if row.status == "reviewed" and not was_reviewed else []
    await _save(
        session,
        row,
        team_id=user.team_id,
        before_commit=functools.partial(
            _emit_reviewed, session, user=user, dataset_id=dataset.id, row_ids=reviewed
        ),
    )
    return await get_row(session, team_id=user.team_id, dataset_id=dataset.id, row_id=row_id)


async def delete_row(
    session: AsyncSession, *, user: User, dataset_id: uuid.UUID, row_id: uuid.UUID
) -> None:
    """Delete one row of the dataset.

    Raises:
        NotFoundException: when the row is not in this dataset of the caller's team.
    """
    await _delete_rows(session, user=user, dataset_id=dataset_id, row_ids=[row_id])


async def _delete_rows(
    session: AsyncSession,
    *,
    user: User,
    dataset_id: uuid.UUID,
    row_ids: Sequence[uuid.UUID],
) -> None:
    """Delete the rows (all of them or none), recording `user` as who deleted them."""
    team_id = user.team_id
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    await row_actor.name_actor(session, user.id)
    wanted = set(row_ids)
    statement = (
        delete(DatasetRow)
        .where(col(DatasetRow.dataset_id) == dataset.id, col(DatasetRow.id).in_(wanted))
        .returning(col(DatasetRow.id))
    )
    deleted = (await session.exec(statement)).scalars().all()
    if len(deleted) != len(wanted):
        raise NotFoundException(_missing_message(len(wanted)))
    await webhook_events.emit_many(
        session,
        team_id=team_id,
        event="row.deleted",
        items=[{"dataset_id": dataset.id, "row_id": row_id} for row_id in deleted],
    )
    await session.commit()


def _missing_message(count: int) -> str:
    return "Row not found" if count == 1 else "Some rows are not in this dataset; nothing changed"


async def bulk_delete(
    session: AsyncSession,
    *,
    user: User,
    dataset_id: uuid.UUID,
    row_ids: Sequence[uuid.UUID],
) -> None:
    """Delete several rows, all or nothing.

    Raises:
        NotFoundException: when any id is not a row of this dataset (nothing is deleted).
    """
    if row_ids:
        await _delete_rows(session, user=user, dataset_id=dataset_id, row_ids=row_ids)
    else:
        await dataset_service.get_dataset(session, team_id=user.team_id, dataset_id=dataset_id)


async def bulk_update_status(
    session: AsyncSession,
    *,
    user: User,
    dataset_id: uuid.UUID,
    row_ids: Sequence[uuid.UUID],
    status: RowStatus,
) -> None:
    """Set the status of several rows, all or nothing; their review leases end.

    Raises:
        NotFoundException: when any id is not a row of this dataset (nothing changes).
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    wanted = set(row_ids)
    if not wanted:
        return
    newly_reviewed: Sequence[uuid.UUID] = []
    if status == "reviewed":
        newly_reviewed = (
            await session.exec(
                select(DatasetRow.id)
                .where(
                    col(DatasetRow.dataset_id) == dataset.id,
                    col(DatasetRow.id).in_(wanted),
                    col(DatasetRow.status) != "reviewed",
                )
                .with_for_update()
            )
        ).all()
    statement = (
        update(DatasetRow)
        .where(col(DatasetRow.dataset_id) == dataset.id, col(DatasetRow.id).in_(wanted))
        .values(
            status=status,
            updated_by=user.id,
            updated_at=utcnow(),
            claimed_by=None,
            claim_expires_at=None,
        )
        .returning(col(DatasetRow.id))
    )
    changed = (await session.exec(statement)).all()
    if len(changed) != len(wanted):
        raise NotFoundException(_missing_message(len(wanted)))
    await _emit_reviewed(session, user=user, dataset_id=dataset.id, row_ids=newly_reviewed)
    await session.commit()


async def _emit_reviewed(
    session: AsyncSession, *, user: User, dataset_id: uuid.UUID, row_ids: Sequence[uuid.UUID]
) -> None:
    """`row.reviewed` for each row whose status has just become `reviewed`."""
    await webhook_events.emit_many(
        session,
        team_id=user.team_id,
        event="row.reviewed",
        items=[
            {"dataset_id": dataset_id, "row_id": row_id, "reviewed_by": user.id}
            for row_id in row_ids
        ],
    )
