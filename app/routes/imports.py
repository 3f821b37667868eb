"""Background imports of the caller's team: submit, follow, page errors, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from app.common.exceptions import ErrorResponse
from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.import_job import (
    ImportErrorPage,
    ImportErrorPublic,
    ImportJob,
    ImportJobPage,
    ImportJobPublic,
)
from app.routes.deps import CurrentUser, SessionDep, SettingsDep
from app.routes.import_upload import read_file_import
from app.routes.rows import FILE_RULES, IMPORT_FORM_SCHEMA
from app.services import import_jobs
from app.services.import_jobs import MAX_ACTIVE_PER_TEAM, Submission

router = APIRouter(tags=["imports"])

READ_ERRORS = error_responses(400, 401, 403, 404)
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **error_responses(400, 401, 403, 404, 413),
    429: {
        "model": ErrorResponse,
        "description": f"The team already has {MAX_ACTIVE_PER_TEAM} imports queued or running "
        "(RATE_LIMITED, with `Retry-After`)",
    },
}
SUBMIT_DESCRIPTION = f"""Import rows from an uploaded CSV or JSON Lines file in the background
(multipart/form-data, the same parts as `rows-import-file`): the answer is `202` with the job
as soon as the file is stored, and the rows are imported by the queue's workers.

The file and the mapping are checked first, as by the synchronous import: a bad mapping, an
empty CSV, a file that is not UTF-8 or is over `IMPORT_MAX_BYTES` is refused at once (400/413)
and nothing is queued. The file is kept in the database, cut into parts of 1,000 records that
workers on any host import at once; follow the job with `GET /api/v1/imports/{{job_id}}`
(`processed`/`total`, `rate`), page every invalid record with `.../errors`, and stop it with
`.../cancel`. A job's `state` goes `queued` → `running` → `done`, or `failed` (with `error`),
or `cancelled`. Counters change in the same transaction as the rows, so they are exact at every
moment, also after a worker was killed mid-import: the job then resumes where its committed
batches end.

A team may have {MAX_ACTIVE_PER_TEAM} imports queued or running; one more is 429.

{FILE_RULES}
Every invalid record is kept (no limit of 100),
with its line, under `GET /api/v1/imports/{{job_id}}/errors`."""


def _job_location(job: ImportJob) -> str:
    return f"/api/v1/imports/{job.id}"


@router.post(
    "/datasets/{dataset_id}/imports",
    operation_id="imports-create",
    status_code=202,
    description=SUBMIT_DESCRIPTION,
    response_model=ImportJobPublic,
    responses=SUBMIT_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": IMPORT_FORM_SCHEMA}},
        }
    },
)
async def submit_import(
    dataset_id: uuid.UUID,
    request: Request,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> ImportJob:
    """Queue an import of an uploaded file (see `SUBMIT_DESCRIPTION`)."""
    with await read_file_import(request, max_bytes=settings.import_max_bytes) as upload:
        job = await import_jobs.submit(
            session,
            user=user,
            dataset_id=dataset_id,
            upload=Submission(
                lines=upload.lines,
                format=upload.format,
                column_mapping=upload.column_mapping,
                mark_all_pending=upload.mark_all_pending,
                skip_near_duplicates=upload.skip_near_duplicates,
                file_name=upload.file_name,
                file_bytes=upload.file_bytes,
            ),
        )
    response.headers["Location"] = _job_location(job)
    return job


@router.get(
    "/datasets/{dataset_id}/imports",
    operation_id="imports-list",
    response_model=ImportJobPage,
    responses=READ_ERRORS,
)
async def list_imports(
    dataset_id: uuid.UUID, user: CurrentUser, session: SessionDep, params: PageDep
) -> Page[ImportJob]:
    """A page of the dataset's background imports, newest first."""
    jobs, total = await import_jobs.list_jobs(
        session, team_id=user.team_id, dataset_id=dataset_id, params=params
    )
    return Page[ImportJob].build(jobs, total, params)


@router.get(
    "/imports/{job_id}",
    operation_id="imports-get",
    response_model=ImportJobPublic,
    responses=READ_ERRORS,
)
async def get_import(job_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> ImportJob:
    """One background import of the team: its state, progress and counts."""
    return await import_jobs.get_job(session, team_id=user.team_id, job_id=job_id)


@router.get(
    "/imports/{job_id}/errors",
    operation_id="imports-errors",
    response_model=ImportErrorPage,
    responses=READ_ERRORS,
)
async def list_import_errors(
    job_id: uuid.UUID, user: CurrentUser, session: SessionDep, params: PageDep
) -> ImportErrorPage:
    """A page of the records the import skipped as invalid, in line order, each with its line
    (CSV: the line the record starts on, header = 1; JSONL: the line, the first is 1) and the
    reason. Errors of the batches committed so far are listed while the job runs."""
    errors, total = await import_jobs.list_errors(
        session, team_id=user.team_id, job_id=job_id, params=params
    )
    items = [ImportErrorPublic(line=error.line, message=error.message) for error in errors]
    return ImportErrorPage.build(items, total, params)


@router.post(
    "/imports/{job_id}/cancel",
    operation_id="imports-cancel",
    response_model=ImportJobPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def cancel_import(job_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> ImportJob:
    """Cancel a queued or running import (who submitted it, or an admin; else 403). Rows of
    the batches already committed stay; the batch under way is rolled back. A job that has
    already finished is 409 CONFLICT."""
    return await import_jobs.cancel(session, user=user, job_id=job_id)
