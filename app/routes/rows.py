"""Rows of a dataset of the caller's team (any member)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.common.dependencies import (
    CurrentUser,
    EngineDep,
    ImageFetcherDep,
    SessionDep,
    SettingsDep,
)
from app.common.import_upload import read_import_request
from app.common.openapi import error_responses
from app.common.pagination import PageDep
from app.models.row import (
    BulkRowIds,
    BulkStatusUpdate,
    ExportFormat,
    ImportRequest,
    ImportResult,
    RowCreate,
    RowIds,
    RowPage,
    RowPublic,
    RowSort,
    RowStatus,
    RowUpdate,
)
from app.services import export_service, import_service, row_service

router = APIRouter(prefix="/datasets/{dataset_id}/rows", tags=["rows"])

READ_ERRORS = error_responses(400, 401, 403, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 413)


@router.get("", operation_id="rows-list", response_model=RowPage, responses=READ_ERRORS)
async def list_rows(
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    params: PageDep,
    status: Annotated[RowStatus | None, Query(description="Only rows with this status")] = None,
    sort: Annotated[RowSort, Query(description="Order; ties broken by id")] = "-updated_at",
) -> RowPage:
    """A page of the dataset's rows, optionally filtered by status.

    `sort` is `created_at`, `-created_at`, `updated_at` or `-updated_at` (default); rows with the
    same timestamp are ordered by id, so pages are stable.
    """
    return await row_service.list_rows(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        params=params,
        status=status,
        sort=sort,
    )


@router.get("/queue", operation_id="rows-queue", response_model=RowPage, responses=READ_ERRORS)
async def review_queue(
    dataset_id: uuid.UUID, user: CurrentUser, session: SessionDep, params: PageDep
) -> RowPage:
    """The review queue: pending rows, oldest first."""
    return await row_service.review_queue(
        session, team_id=user.team_id, dataset_id=dataset_id, params=params
    )


@router.post(
    "/bulk/update-status",
    operation_id="rows-bulk-update-status",
    status_code=204,
    response_class=Response,
    responses=READ_ERRORS,
)
async def bulk_update_status(
    dataset_id: uuid.UUID, data: BulkStatusUpdate, user: CurrentUser, session: SessionDep
) -> Response:
    """Set the status of up to 1000 rows; any id not in this dataset is 404 and nothing changes."""
    await row_service.bulk_update_status(
        session, user=user, dataset_id=dataset_id, row_ids=data.row_ids, status=data.status
    )
    return Response(status_code=204)


@router.post(
    "/bulk/delete",
    operation_id="rows-bulk-delete",
    status_code=204,
    response_class=Response,
    responses=READ_ERRORS,
)
async def bulk_delete(
    dataset_id: uuid.UUID,
    data: Annotated[
        RowIds | BulkRowIds,
        Body(description='A JSON array of row ids, or `{"row_ids": [...]}`; at most 1000'),
    ],
    user: CurrentUser,
    session: SessionDep,
) -> Response:
    """Delete up to 1000 rows; any id not in this dataset is 404 and nothing is deleted."""
    row_ids = data.row_ids if isinstance(data, BulkRowIds) else data
    await row_service.bulk_delete(
        session, team_id=user.team_id, dataset_id=dataset_id, row_ids=row_ids
    )
    return Response(status_code=204)


IMPORT_BODY_SCHEMA: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": ImportRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "column_mapping"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "column_mapping": {
                        "type": "string",
                        "description": "JSON object: image_url and field ids → column names",
                    },
                    "mark_all_pending": {"type": "boolean", "default": False},
                },
            }
        },
    },
}


@router.post(
    "/import",
    operation_id="rows-import",
    response_model=ImportResult,
    responses=WRITE_ERRORS,
    openapi_extra={"requestBody": IMPORT_BODY_SCHEMA},
)
async def import_rows(
    dataset_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    fetcher: ImageFetcherDep,
) -> ImportResult:
    """Import rows from a CSV file (JSON `file_content`, or a multipart `file` part).

    `column_mapping` maps `"image_url"` (required) and field ids to CSV column names; an empty
    name means "not mapped". A mapping naming an unknown field, or a column missing from the
    header, is 400 before any row is read. The CSV is UTF-8 (a BOM is accepted), comma-separated,
    RFC 4180 quoted, header first, at most `IMPORT_MAX_BYTES` (413). Booleans accept
    true/false/yes/no/1/0, an empty cell is unset, fields with a `default_value` get it when
    empty. Invalid rows and images that cannot be fetched are skipped with `"Row N: reason"`
    (N = CSV line, header = 1; at most 100 messages). Images already in the dataset or repeated
    in the file count as `skipped_duplicates`. Rows are committed in batches of 500, so an
    interrupted import keeps what it committed and a rerun adds only what is missing.
    """
    upload = await read_import_request(request, max_bytes=settings.import_max_bytes)
    with upload:
        return await import_service.import_csv(
            session,
            fetcher,
            user=user,
            dataset_id=dataset_id,
            lines=upload.lines,
            column_mapping=upload.column_mapping,
            mark_all_pending=upload.mark_all_pending,
            concurrency=settings.import_concurrency,
        )


@router.get(
    "/export",
    operation_id="rows-export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows as a CSV or JSONL file",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        **READ_ERRORS,
    },
)
async def export_rows(
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    engine: EngineDep,
    only_reviewed: Annotated[bool, Query(description="Only rows with status reviewed")] = False,
    format: Annotated[ExportFormat, Query(description="csv or jsonl")] = "csv",
) -> StreamingResponse:
    """Download the dataset's rows as a streamed file, oldest first.

    CSV columns: `image_url`, one column per field named by the field's name in position
    order, then `status`, `created_at`, `updated_at`, `updated_by` (email); booleans as
    true/false, unset values empty. JSONL: one object per row with `id`, `image_url`,
    `image_hash`, `status`, `data` (field name → value, set fields only), `created_at`,
    `updated_at`, `created_by_email`, `updated_by_email`. Memory stays flat at any size.
    """
    plan = await export_service.plan_export(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        only_reviewed=only_reviewed,
        fmt=format,
    )
    return StreamingResponse(
        export_service.stream_export(engine, plan),
        media_type=export_service.MEDIA_TYPES[format],
        headers={"Content-Disposition": export_service.content_disposition(plan.filename)},
    )


@router.get("/{row_id}", operation_id="rows-get", response_model=RowPublic, responses=READ_ERRORS)
async def get_row(
    dataset_id: uuid.UUID, row_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> RowPublic:
    """One row of the dataset (404 when it belongs to another dataset)."""
    return await row_service.get_row(
        session, team_id=user.team_id, dataset_id=dataset_id, row_id=row_id
    )


@router.post(
    "",
    operation_id="rows-create",
    status_code=201,
    response_model=RowPublic,
    responses=WRITE_ERRORS,
)
async def create_row(
    dataset_id: uuid.UUID,
    data: RowCreate,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
) -> RowPublic:
    """Add a row: the server downloads `image_url` and stores the image's MD5.

    `data` maps field ids to values, validated by each field's type and config; `null` and `""`
    mean unset. Fields left out (or unset) that have a `default_value` get it. The status is
    `reviewed` when every required field holds a value, else `pending`. An image already in the
    dataset (same MD5) is 409 DUPLICATE. The URL must be http(s) on a public address; the image
    must be at most `IMAGE_MAX_BYTES` (413) and arrive within `IMAGE_FETCH_TIMEOUT` seconds.
    """
    return await row_service.create_row(
        session, fetcher, user=user, dataset_id=dataset_id, data=data
    )


@router.put(
    "/{row_id}", operation_id="rows-update", response_model=RowPublic, responses=WRITE_ERRORS
)
async def update_row(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    data: RowUpdate,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
) -> RowPublic:
    """Change a row. `data`, when given, replaces the whole map and recomputes the status.

    An explicit `status` wins over the computed one. A changed `image_url` is downloaded and
    hashed again. `null` for any of the three keys means "leave unchanged".
    """
    return await row_service.update_row(
        session, fetcher, user=user, dataset_id=dataset_id, row_id=row_id, data=data
    )


@router.delete(
    "/{row_id}",
    operation_id="rows-delete",
    status_code=204,
    response_class=Response,
    responses=READ_ERRORS,
)
async def delete_row(
    dataset_id: uuid.UUID, row_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    """Delete one row."""
    await row_service.delete_row(
        session, team_id=user.team_id, dataset_id=dataset_id, row_id=row_id
    )
    return Response(status_code=204)
