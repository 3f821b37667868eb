"""Imports as background jobs: submit a file, follow its progress, page its errors, cancel it.

Submitting checks the file and the mapping as the synchronous import does (a bad mapping is a
400 at once), cuts the file into parts of whole records (`import_parts`), stores them in
PostgreSQL and queues one queue job per part, all in one transaction. Parts are picked by any
worker on any host; the first part of every import is queued before the later parts of earlier
imports (priority `-part`), so a small import does not wait behind a large one.

A part runs like the synchronous import, batch by batch, and each batch's transaction also
writes its errors, the part's resume point and the job's counters (`_PartProgress.save`). A
worker killed mid-part leaves whole batches; the part is picked again after the heartbeat
timeout and resumes after its last committed line, so no row is counted twice. A transaction
advisory lock per part keeps a part from running twice at once (a slow worker whose heartbeat
was late). Cancelling marks the job `cancelled`; a running part's next batch finds that out in
its own transaction, rolls back and stops.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pgqueuer import Job
from pydantic import BaseModel
from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY, INTEGER, TEXT
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.advisory_slots import hold_until_commit, slot_key
from app.common.exceptions import (
    AppException,
    ConflictException,
    ForbiddenException,
    RateLimitedException,
)
from app.common.pagination import PageParams
from app.models.base import utcnow
from app.models.import_job import ImportJob, ImportJobError, ImportJobPart
from app.models.row import FileFormat
from app.models.user import User
from app.services import dataset_service, webhook_events
from app.services.image_fetch import ImageFetcher
from app.services.import_parts import FilePart, part_lines, split_file
from app.services.import_service import (
    RECORD_LABELS,
    Checkpoint,
    paced,
    record_source,
    run_import,
    text_lines,
)
from app.services.job_queue import IMPORT_PART, enqueue, run_job
from app.services.row_service import field_rules
from app.services.team_scope import get_owned, page_where

logger = logging.getLogger(__name__)

PART_RETRIES = 3
"""Times a part that failed unexpectedly is tried again (after 1, 2 and 4 s) before the whole
job is marked failed."""
MAX_ACTIVE_PER_TEAM = 20
"""Imports a team may have queued or running at once; more is 429."""
FINISHED_FIELDS = (
    "state",
    "error",
    "total",
    "processed",
    "imported",
    "skipped_duplicates",
    "skipped_invalid",
)
"""What `import.finished` tells about the job, besides its id and dataset."""
UNEXPECTED = "an unexpected error stopped the import (the server log has the details)"
ACTIVE_SLOT = b"aitrace-jobs"
PART_LOCK = b"aitrace-part"


class PartRef(BaseModel):
    """The payload of a part's queue job."""

    job_id: uuid.UUID
    part: int


class JobStopped(Exception):
    """The job was cancelled (or failed, or deleted) while a part was running."""


@dataclass(frozen=True)
class Submission:
    """A file to import in the background, as read from the request."""

    lines: Iterable[str]
    format: FileFormat
    column_mapping: dict[str, str | None] | None
    mark_all_pending: bool
    skip_near_duplicates: int | None
    file_name: str | None
    file_bytes: int


_INSERT_PART = text("""INSERT INTO import_job_parts
       (job_id, part, first_line, records, content, done_through_line, finished)
       VALUES (:job_id, :part, :first_line, :records, :content, 0, false)""")
_SAVE_ERRORS = text("""INSERT INTO import_job_errors (job_id, line, message)
       SELECT :job_id, e.line, e.message FROM unnest(:lines, :messages) AS e(line, message)
       ON CONFLICT DO NOTHING""").bindparams(
    bindparam("lines", type_=ARRAY(INTEGER)), bindparam("messages", type_=ARRAY(TEXT))
)
_SAVE_COUNTS = text("""UPDATE import_jobs
          SET processed = processed + :processed, imported = imported + :imported,
              skipped_duplicates = skipped_duplicates + :duplicates,
              skipped_invalid = skipped_invalid + :invalid
        WHERE id = :job_id AND state = 'running'
    RETURNING id""")
_SAVE_PART = text("""UPDATE import_job_parts SET done_through_line = :line, finished = :final
        WHERE job_id = :job_id AND part = :part""")
_PART_DONE = text("""UPDATE import_jobs
          SET parts_done = parts_done + 1,
              state = CASE WHEN parts_done + 1 >= parts_total THEN 'done' ELSE state END,
              finished_at = CASE WHEN parts_done + 1 >= parts_total THEN now() END
        WHERE id = :job_id
    RETURNING state""")
_START = text("""UPDATE import_jobs SET state = 'running', started_at = COALESCE(started_at, now())
        WHERE id = :job_id AND state IN ('queued', 'running')
    RETURNING id""")
_STOP = text("""UPDATE import_jobs SET state = :state, error = :error, finished_at = now()
        WHERE id = :job_id AND state IN ('queued', 'running')
    RETURNING id""")
_DROP_FILE = text("DELETE FROM import_job_parts WHERE job_id = :job_id")


async def _check_capacity(
    session: AsyncSession, team_id: uuid.UUID, *, new_job: uuid.UUID | None = None
) -> None:
    """Refuse a new import when the team has `MAX_ACTIVE_PER_TEAM` queued or running.

    `submit` checks twice: first without a lock, to refuse before reading the file; then, with
    the job and its parts written (`new_job`, not counted), under the team's lock until its
    commit, so that concurrent submissions count each other. The lock is held only for that
    count and the commit, never while a large file is cut into parts.
    """
    if new_job is not None:
        await hold_until_commit(session, slot_key(ACTIVE_SLOT, team_id, 0))
    active = (
        await session.exec(
            select(func.count())
            .select_from(ImportJob)
            .where(
                col(ImportJob.team_id) == team_id,
                col(ImportJob.state).in_(("queued", "running")),
                col(ImportJob.id) != new_job,
            )
        )
    ).one()
    if active >= MAX_ACTIVE_PER_TEAM:
        raise RateLimitedException(
            f"This team already has {MAX_ACTIVE_PER_TEAM} imports queued or running; "
            "retry when one has finished",
            headers={"Retry-After": "30"},
        )


async def submit(
    session: AsyncSession, *, user: User, dataset_id: uuid.UUID, upload: Submission
) -> ImportJob:
    """Store the file as parts and queue them; the job is committed with its queue jobs.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for a missing, unexpected or bad mapping, or an empty CSV.
        RateLimitedException: when the team has too many imports queued or running.
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    await _check_capacity(session, user.team_id)
    rules = await field_rules(session, dataset, lock_schema=False)
    split = split_file(upload.lines, upload.format)
    record_source(text_lines(split.header), upload.format, upload.column_mapping, rules)
    job = ImportJob(
        team_id=user.team_id,
        dataset_id=dataset.id,
        format=upload.format,
        file_name=upload.file_name,
        file_bytes=upload.file_bytes,
        mark_all_pending=upload.mark_all_pending,
        skip_near_duplicates=upload.skip_near_duplicates,
        column_mapping=upload.column_mapping,
        header=split.header or None,
        created_by=user.id,
        total=0,
    )
    session.add(job)
    await session.flush()
    parts = await _store_parts(session, job.id, split.parts)
    job.total = sum(records for records in parts)
    job.parts_total = len(parts)
    if not parts:
        job.state, job.started_at, job.finished_at = "done", utcnow(), utcnow()
    await session.flush()
    if not parts:
        await _announce_end(session, job.id)
    await _check_capacity(session, user.team_id, new_job=job.id)
    await enqueue(
        session,
        IMPORT_PART,
        [
            PartRef(job_id=job.id, part=part).model_dump_json().encode()
            for part in range(len(parts))
        ],
        priorities=[-part for part in range(len(parts))],
    )
    await session.commit()
    await session.refresh(job)
    logger.info("Import job %s queued: %d records in %d parts", job.id, job.total, len(parts))
    return job


async def _store_parts(
    session: AsyncSession, job_id: uuid.UUID, parts: Iterable[FilePart]
) -> list[int]:
    """Insert each part as it is cut (one in memory at a time); returns their record counts."""
    counts: list[int] = []
    async for part in paced(iter(parts)):
        await session.exec(  # type: ignore[call-overload]
            _INSERT_PART.bindparams(
                job_id=job_id,
                part=len(counts),
                first_line=part.first_line,
                records=part.records,
                content=part.text.encode("utf-8"),
            )
        )
        counts.append(part.records)
    return counts


async def get_job(session: AsyncSession, *, team_id: uuid.UUID, job_id: uuid.UUID) -> ImportJob:
    """The team's import job.

    Raises:
        NotFoundException: when no such job is in this team.
    """
    return await get_owned(
        session, ImportJob, team_id=team_id, record_id=job_id, not_found="Import not found"
    )


async def list_jobs(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID, params: PageParams
) -> tuple[list[ImportJob], int]:
    """A page of the dataset's imports, newest first, and how many there are.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    return await page_where(
        session,
        ImportJob,
        where=(col(ImportJob.dataset_id) == dataset_id, col(ImportJob.team_id) == team_id),
        order_by=(col(ImportJob.created_at).desc(), col(ImportJob.id).desc()),
        params=params,
    )


async def list_errors(
    session: AsyncSession, *, team_id: uuid.UUID, job_id: uuid.UUID, params: PageParams
) -> tuple[list[ImportJobError], int]:
    """A page of the job's errors in line order, and how many there are.

    Raises:
        NotFoundException: when no such job is in this team.
    """
    job = await get_job(session, team_id=team_id, job_id=job_id)
    errors = (
        await session.exec(
            select(ImportJobError)
            .where(col(ImportJobError.job_id) == job.id)
            .order_by(col(ImportJobError.line))
            .offset(params.offset)
            .limit(params.page_size)
        )
    ).all()
    return list(errors), job.skipped_invalid


async def cancel(session: AsyncSession, *, user: User, job_id: uuid.UUID) -> ImportJob:
    """Cancel a queued or running import; what its committed batches imported stays.

    Raises:
        NotFoundException: when no such job is in this team.
        ForbiddenException: when the caller neither submitted it nor is an admin.
        ConflictException: when the job has already finished.
    """
    job = await get_job(session, team_id=user.team_id, job_id=job_id)
    if user.role != "admin" and job.created_by != user.id:
        raise ForbiddenException("Only who submitted an import, or an admin, can cancel it")
    if not await _stop(session, job.id, "cancelled"):
        state = job.state
        await session.rollback()
        raise ConflictException(f"The import has already finished (state {state})")
    await session.commit()
    await session.refresh(job)
    return job


async def _stop(
    session: AsyncSession, job_id: uuid.UUID, state: str, error: str | None = None
) -> bool:
    """End a queued or running job in `state` and drop its file; False if it had ended."""
    stopped = (
        await session.exec(  # type: ignore[call-overload]
            _STOP.bindparams(job_id=job_id, state=state, error=error)
        )
    ).first()
    if stopped is not None:
        await session.exec(_DROP_FILE.bindparams(job_id=job_id))  # type: ignore[call-overload]
        await _announce_end(session, job_id)
    return stopped is not None


async def _announce_end(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Raise `import.finished` for a job that has just ended, in the transaction that ends it."""
    job = await session.get(ImportJob, job_id, populate_existing=True)
    if job is None:
        return
    await webhook_events.emit(
        session,
        team_id=job.team_id,
        event="import.finished",
        data={
            "job_id": job.id,
            "dataset_id": job.dataset_id,
            **{key: getattr(job, key) for key in FINISHED_FIELDS},
        },
    )


@dataclass
class _PartProgress:
    """Writes a part's checkpoints: errors, counters, resume point, and the end of the job."""

    job_id: uuid.UUID
    part: int

    async def save(self, session: AsyncSession, done: Checkpoint) -> None:
        """Raises JobStopped when the job is no longer running (the batch is rolled back)."""
        counted = (
            await session.exec(  # type: ignore[call-overload]
                _SAVE_COUNTS.bindparams(
                    job_id=self.job_id,
                    processed=done.processed,
                    imported=done.imported,
                    duplicates=done.skipped_duplicates,
                    invalid=len(done.errors),
                )
            )
        ).first()
        if counted is None:
            raise JobStopped
        if done.errors:
            await session.exec(  # type: ignore[call-overload]
                _SAVE_ERRORS.bindparams(
                    job_id=self.job_id,
                    lines=[line for line, _ in done.errors],
                    messages=[message.replace("\x00", "\\u0000") for _, message in done.errors],
                )
            )
        await session.exec(  # type: ignore[call-overload]
            _SAVE_PART.bindparams(
                job_id=self.job_id, part=self.part, line=done.through_line, final=done.final
            )
        )
        if done.final:
            state = (
                await session.exec(_PART_DONE.bindparams(job_id=self.job_id))  # type: ignore[call-overload]
            ).one()[0]
            if state == "done":
                await session.exec(_DROP_FILE.bindparams(job_id=self.job_id))  # type: ignore[call-overload]
                await _announce_end(session, self.job_id)
                logger.info("Import job %s done", self.job_id)


async def _load_part(session: AsyncSession, ref: PartRef) -> tuple[ImportJob, ImportJobPart] | None:
    """Mark the job running and load it with the part; None when there is nothing to do (the
    job ended or is gone, or the part is finished)."""
    started = (
        await session.exec(_START.bindparams(job_id=ref.job_id))  # type: ignore[call-overload]
    ).first()
    job = await session.get(ImportJob, ref.job_id, populate_existing=True)
    part = await session.get(ImportJobPart, (ref.job_id, ref.part))
    await session.commit()
    if started is None or job is None or part is None or part.finished:
        return None
    return job, part


async def _import_part(
    session: AsyncSession, fetcher: ImageFetcher, ref: PartRef, *, concurrency: int
) -> None:
    loaded = await _load_part(session, ref)
    if loaded is None:
        return
    job, part = loaded
    dataset = await dataset_service.get_dataset(
        session, team_id=job.team_id, dataset_id=job.dataset_id
    )
    rules = await field_rules(session, dataset, lock_schema=False)
    await session.commit()
    fmt: FileFormat = "jsonl" if job.format == "jsonl" else "csv"
    piece = FilePart(part.first_line, part.records, part.content.decode("utf-8"))
    lines, offset = part_lines(job.header or "", piece)
    mapping: dict[str, Any] | None = job.column_mapping
    await run_import(
        session,
        fetcher,
        dataset=dataset,
        user_id=job.created_by,
        records=record_source(lines, fmt, mapping, rules, line_offset=offset),
        label=RECORD_LABELS[fmt],
        mark_all_pending=job.mark_all_pending,
        skip_near_duplicates=job.skip_near_duplicates,
        concurrency=concurrency,
        saver=_PartProgress(job.id, part.part).save,
        resume_after=part.done_through_line,
    )


async def run_part(job: Job, resources: Any) -> None:
    """The queue job of one part (see the module's docstring); `resources` is the worker's
    `WorkerResources`.

    A part whose mapping no longer fits the schema (a field deleted since) fails the job with
    that reason; an unexpected error is retried `PART_RETRIES` times before it does.
    """
    ref = PartRef.model_validate_json(job.payload or b"{}")

    async def work(session: AsyncSession) -> None:
        await _import_part(
            session,
            resources.fetcher,
            ref,
            concurrency=resources.settings.import_concurrency,
        )

    async def fail(session: AsyncSession, reason: str) -> None:
        await _end_failed(session, ref.job_id, reason)

    await run_job(
        job,
        resources,
        lock_key=slot_key(PART_LOCK, ref.job_id, ref.part),
        what=f"Import job {ref.job_id}, part {ref.part}",
        work=work,
        fail=fail,
        retries=PART_RETRIES,
        unexpected=UNEXPECTED,
        stopped=JobStopped,
        refusals=(AppException,),
    )


async def _end_failed(session: AsyncSession, job_id: uuid.UUID, reason: str) -> None:
    if await _stop(session, job_id, "failed", reason[:1000]):
        logger.warning("Import job %s failed: %s", job_id, reason)
    await session.commit()
