"""Image backfills: record the image facts of rows stored before they were recorded.

Starting a backfill (or upgrading to revision 0011, which queues one per dataset with rows)
writes an `image_backfills` record and one queue job, in one transaction. A worker then walks
the dataset's rows that have no perceptual hash yet, in creation order, `BATCH_SIZE` at a time:
it re-downloads their images through the safe fetcher (`IMPORT_CONCURRENCY` at once) and, in
one transaction per batch, stores the facts of every image whose MD5 is still the row's and
moves the backfill's counters and resume point. A row whose URL now serves another image is
counted as `changed`, one that cannot be fetched or decoded as `failed`; both are left without
facts. A worker killed mid-way leaves whole batches; the job is picked again after the heartbeat
timeout and resumes after the last committed row. A transaction advisory lock per backfill
keeps it from running twice at once.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgqueuer import Job
from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.advisory_slots import slot_key
from app.common.db_errors import unique_constraint
from app.common.exceptions import AppException, ConflictException
from app.common.pagination import PageParams
from app.models.image_backfill import ACTIVE_BACKFILL_KEY, ImageBackfill
from app.models.row import DatasetRow
from app.models.user import User
from app.services import dataset_service
from app.services.image_columns import image_array_params, image_arrays
from app.services.image_fetch import FetchedImage, ImageFetcher
from app.services.job_queue import IMAGE_BACKFILL, enqueue, run_job
from app.services.team_scope import get_owned, page_where

BATCH_SIZE = 100
"""Rows fetched, then written in one transaction."""
RETRIES = 5
"""Times an unexpected failure (a database restart) is retried before the backfill fails."""
UNEXPECTED = "the backfill failed unexpectedly; start it again"
BACKFILL_LOCK = b"img-backfill"
"""Advisory lock kind of a running backfill (`slot_key(BACKFILL_LOCK, backfill_id, 0)`)."""
_START = text("""UPDATE image_backfills
       SET state = 'running', started_at = COALESCE(started_at, now())
     WHERE id = :id AND state IN ('queued', 'running')
 RETURNING dataset_id, resume_created_at, resume_id""")
_NEXT_ROWS = text("""SELECT id, created_at, image_url, image_hash FROM dataset_rows
     WHERE dataset_id = :dataset_id AND image_dhash IS NULL
       AND (CAST(:after_created AS timestamptz) IS NULL
            OR (created_at, id) > (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
     ORDER BY created_at, id
     LIMIT :limit""")
_STORE = text("""UPDATE dataset_rows AS r
       SET image_width = u.width, image_height = u.height, image_format = u.format,
           image_bytes = u.bytes, image_dhash = u.dhash
      FROM unnest(:ids, :hashes, :widths, :heights, :formats, :sizes, :dhashes)
           AS u(id, hash, width, height, format, bytes, dhash)
     WHERE r.id = u.id AND r.dataset_id = :dataset_id AND r.image_hash = u.hash""").bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))), *image_array_params()
)
_PROGRESS = text("""UPDATE image_backfills
       SET processed = processed + :processed, updated = updated + :updated,
           changed = changed + :changed, failed = failed + :failed,
           resume_created_at = :after_created, resume_id = :after_id
     WHERE id = :id AND state = 'running'
 RETURNING id""")
_FINISH = text("""UPDATE image_backfills
       SET state = :state, error = :error, finished_at = now()
     WHERE id = :id AND state IN ('queued', 'running')""")


async def start(session: AsyncSession, *, user: User, dataset_id: uuid.UUID) -> ImageBackfill:
    """Queue a backfill of the dataset's rows that have no image facts.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ConflictException: when a backfill of the dataset is already queued or running.
    """
    await dataset_service.get_dataset(session, team_id=user.team_id, dataset_id=dataset_id)
    missing = (
        await session.exec(
            select(func.count())
            .select_from(DatasetRow)
            .where(DatasetRow.dataset_id == dataset_id, col(DatasetRow.image_dhash).is_(None))
        )
    ).one()
    backfill = ImageBackfill(
        dataset_id=dataset_id, team_id=user.team_id, total=missing, requested_by=user.id
    )
    session.add(backfill)
    try:
        await session.flush()
    except IntegrityError as error:
        await session.rollback()
        if unique_constraint(error) == ACTIVE_BACKFILL_KEY:
            raise ConflictException(
                "A backfill of this dataset is already queued or running"
            ) from None
        raise
    await enqueue(session, IMAGE_BACKFILL, [str(backfill.id).encode()])
    await session.commit()
    await session.refresh(backfill)
    return backfill


async def get_backfill(
    session: AsyncSession, *, team_id: uuid.UUID, backfill_id: uuid.UUID
) -> ImageBackfill:
    """The team's backfill.

    Raises:
        NotFoundException: when no such backfill is in this team.
    """
    return await get_owned(
        session,
        ImageBackfill,
        team_id=team_id,
        record_id=backfill_id,
        not_found="Image backfill not found",
    )


async def list_backfills(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID, params: PageParams
) -> tuple[list[ImageBackfill], int]:
    """A page of the dataset's backfills, newest first, and how many there are.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    return await page_where(
        session,
        ImageBackfill,
        where=(
            col(ImageBackfill.dataset_id) == dataset_id,
            col(ImageBackfill.team_id) == team_id,
        ),
        order_by=(col(ImageBackfill.created_at).desc(), col(ImageBackfill.id).desc()),
        params=params,
    )


@dataclass(frozen=True)
class _Stored:
    """A row waiting for its facts."""

    id: uuid.UUID
    created_at: datetime
    image_url: str
    image_hash: str


class _Stopped(Exception):
    """The backfill is no longer running (its dataset was deleted)."""


async def _fetch_batch(
    fetcher: ImageFetcher, rows: list[_Stored], concurrency: int
) -> list[FetchedImage | None]:
    """Each row's image as fetched now, or None when it cannot be fetched or decoded."""
    gate = asyncio.Semaphore(concurrency)

    async def fetch(row: _Stored) -> FetchedImage | None:
        async with gate:
            try:
                return await fetcher.fetch(row.image_url)
            except AppException:
                return None

    return await asyncio.gather(*(fetch(row) for row in rows))


async def _run_batch(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    backfill_id: uuid.UUID,
    dataset_id: uuid.UUID,
    rows: list[_Stored],
    concurrency: int,
) -> None:
    """Fetch a batch's images, then store their facts and the progress in one transaction."""
    fetched = await _fetch_batch(fetcher, rows, concurrency)
    same = [
        (row, image) for row, image in zip(rows, fetched) if image and image.md5 == row.image_hash
    ]
    failed = fetched.count(None)
    changed = len(rows) - failed - len(same)
    stored = await session.exec(  # type: ignore[call-overload]
        _STORE.bindparams(
            dataset_id=dataset_id,
            ids=[row.id for row, _ in same],
            **image_arrays([image for _, image in same]),
        )
    )
    moved = await session.exec(  # type: ignore[call-overload]
        _PROGRESS.bindparams(
            id=backfill_id,
            processed=len(rows),
            updated=stored.rowcount,
            changed=changed + len(same) - stored.rowcount,
            failed=failed,
            after_created=rows[-1].created_at,
            after_id=rows[-1].id,
        )
    )
    if moved.first() is None:
        raise _Stopped
    await session.commit()


async def _backfill(
    session: AsyncSession, fetcher: ImageFetcher, backfill_id: uuid.UUID, concurrency: int
) -> None:
    """Run the backfill to its end (see the module documentation)."""
    begun = (await session.exec(_START.bindparams(id=backfill_id))).first()  # type: ignore[call-overload]
    await session.commit()
    if begun is None:
        return
    dataset_id, after = begun.dataset_id, (begun.resume_created_at, begun.resume_id)
    while True:
        found = await session.exec(  # type: ignore[call-overload]
            _NEXT_ROWS.bindparams(
                dataset_id=dataset_id,
                after_created=after[0],
                after_id=after[1],
                limit=BATCH_SIZE,
            )
        )
        rows = [_Stored(*row) for row in found.all()]
        await session.commit()
        if not rows:
            break
        await _run_batch(
            session,
            fetcher,
            backfill_id=backfill_id,
            dataset_id=dataset_id,
            rows=rows,
            concurrency=concurrency,
        )
        after = (rows[-1].created_at, rows[-1].id)
    await _finish(session, backfill_id, "done")


async def _finish(
    session: AsyncSession, backfill_id: uuid.UUID, state: str, error: str | None = None
) -> None:
    await session.exec(  # type: ignore[call-overload]
        _FINISH.bindparams(id=backfill_id, state=state, error=error)
    )
    await session.commit()


async def run(job: Job, resources: Any) -> None:
    """The queue job of one backfill; `resources` is the worker's `WorkerResources`.

    An unexpected error is retried `RETRIES` times (resuming where the committed batches end)
    before the backfill is marked `failed`.
    """
    backfill_id = uuid.UUID((job.payload or b"").decode())

    async def work(session: AsyncSession) -> None:
        await _backfill(
            session,
            resources.fetcher,
            backfill_id,
            concurrency=resources.settings.import_concurrency,
        )

    async def fail(session: AsyncSession, reason: str) -> None:
        await _finish(session, backfill_id, "failed", reason)

    await run_job(
        job,
        resources,
        lock_key=slot_key(BACKFILL_LOCK, backfill_id, 0),
        what=f"Image backfill {backfill_id}",
        work=work,
        fail=fail,
        retries=RETRIES,
        unexpected=UNEXPECTED,
        stopped=_Stopped,
    )
