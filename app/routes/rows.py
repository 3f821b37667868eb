"""Rows of a dataset of the caller's team (any member)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import ErrorResponse, ValidationException
from app.common.guarded_stream import GuardedStreamingResponse
from app.common.openapi import error_responses
from app.common.pagination import CursorPage, Page, PageDep
from app.common.settings import Settings
from app.domain.thumbnails import MEDIA_TYPE, SIZES
from app.models.row import (
    SKIP_NEAR_DUPLICATES,
    BulkRowIds,
    BulkStatusUpdate,
    ClaimedRows,
    ClaimRequest,
    DatasetRow,
    ExportFormat,
    ImportRequest,
    ImportResult,
    ReleasedRows,
    ReleaseRequest,
    RowCreate,
    RowIds,
    RowPage,
    RowPatch,
    RowPublic,
    RowSort,
    RowStatus,
    RowUpdate,
)
from app.models.row_history import RowHistoryEntry, RowHistoryPage
from app.models.user import User
from app.routes.deps import (
    CurrentUser,
    DataKeysDep,
    EngineDep,
    ImageFetcherDep,
    SessionDep,
    SettingsDep,
)
from app.routes.import_upload import ImportUpload, read_file_import, read_import_request
from app.routes.row_listing_params import ListingDep, ListingRequest
from app.services import (
    dataset_service,
    export_service,
    export_slots,
    import_service,
    review_service,
    row_history,
    row_listing,
    row_output,
    row_service,
    thumbnail_service,
)
from app.services.image_fetch import ImageFetcher
from app.services.import_slots import import_slot

router = APIRouter(prefix="/datasets/{dataset_id}/rows", tags=["rows"])

READ_ERRORS = error_responses(400, 401, 403, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 413)
DATA_KEYS_RULES = """`data` names each field by its id or by its name (names match ignoring case;
a key that is one field's id and another field's name means the id). A key that names no field
is 400, and the message lists the schema's fields; a field named twice (by id and by name, or by
two spellings of its name) is 400. With `?data_keys=name` the returned row's `data` is keyed by
field name instead of id."""


async def _public_page(
    session: AsyncSession,
    page: CursorPage[DatasetRow],
    *,
    user: User,
    dataset_id: uuid.UUID,
    listing: ListingRequest,
) -> RowPage:
    """A page of rows in the response shape, `data` keyed as the listing asks."""
    items = await row_output.public_rows(
        session,
        page.items,
        team_id=user.team_id,
        dataset_id=dataset_id,
        data_keys=listing.data_keys,
    )
    return RowPage.model_validate({**dict(page), "items": items})


@router.get("", operation_id="rows-list", response_model=RowPage, responses=READ_ERRORS)
async def list_rows(
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    listing: ListingDep,
    status: Annotated[RowStatus | None, Query(description="Only rows with this status")] = None,
    sort: Annotated[RowSort, Query(description="Order; ties broken by id")] = "-updated_at",
) -> RowPage:
    """A page of the dataset's rows that match every filter given.

    `sort` is `created_at`, `-created_at`, `updated_at` or `-updated_at` (default); rows with the
    same timestamp are ordered by id, so pages are stable. Pages come by number (`page`) or, at
    the same cost at any depth, by `cursor`: every page carries `next_cursor` while another page
    follows. `total` counts the matching rows; for filters beyond `status` it counts up to
    1,000, and `total_exact` is false when there are more.
    """
    page = await row_listing.list_rows(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        params=listing.params,
        filters=replace(listing.filters, status=status),
        sort=sort,
        cursor=listing.cursor,
        timeout=listing.timeout,
    )
    return await _public_page(session, page, user=user, dataset_id=dataset_id, listing=listing)


@router.get("/queue", operation_id="rows-queue", response_model=RowPage, responses=READ_ERRORS)
async def review_queue(
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    listing: ListingDep,
) -> RowPage:
    """The review queue: pending rows that match every filter given, oldest first.

    Filters, `cursor` and `next_cursor` work as in `rows-list`. To hand rows to several
    reviewers without overlap, use `rows-queue-claim`.
    """
    page = await row_listing.review_queue(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        params=listing.params,
        filters=listing.filters,
        cursor=listing.cursor,
        timeout=listing.timeout,
    )
    return await _public_page(session, page, user=user, dataset_id=dataset_id, listing=listing)


@router.post(
    "/queue/claim",
    operation_id="rows-queue-claim",
    response_model=ClaimedRows,
    responses=READ_ERRORS,
)
async def claim_rows(
    dataset_id: uuid.UUID,
    data: ClaimRequest,
    user: CurrentUser,
    session: SessionDep,
    data_keys: DataKeysDep,
) -> ClaimedRows:
    """Take up to `count` (1-50) of the oldest pending rows that nobody holds, leased to you for
    `lease_seconds` (10-3600, default 600).

    Reviewers claiming at once never get the same row. Rows you already hold are not handed out
    again. The lease ends when the row is saved (`PUT`, `PATCH`, bulk status), when you release
    it, or when it expires, and the row is back in the queue. An empty `items` means nothing is
    free. The rows carry `claimed_by` and `claim_expires_at`.
    """
    rows = await review_service.claim_rows(
        session,
        user=user,
        dataset_id=dataset_id,
        count=data.count,
        lease_seconds=data.lease_seconds,
    )
    items = await row_output.public_rows(
        session, rows, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
    )
    return ClaimedRows(items=items)


@router.post(
    "/queue/release",
    operation_id="rows-queue-release",
    response_model=ReleasedRows,
    responses=READ_ERRORS,
)
async def release_rows(
    dataset_id: uuid.UUID, data: ReleaseRequest, user: CurrentUser, session: SessionDep
) -> ReleasedRows:
    """Give back your leases on `row_ids` (all of yours in this dataset when absent).

    Rows you do not hold are left alone; `released` counts the leases that ended.
    """
    released = await review_service.release_rows(
        session, user=user, dataset_id=dataset_id, row_ids=data.row_ids
    )
    return ReleasedRows(released=released)


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
    await row_service.bulk_delete(session, user=user, dataset_id=dataset_id, row_ids=row_ids)
    return Response(status_code=204)


IMPORT_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The CSV or JSON Lines file",
        },
        "format": {
            "type": "string",
            "enum": ["csv", "jsonl"],
            "description": "csv or jsonl; when absent, a file named *.jsonl or *.ndjson is "
            "jsonl, any other csv",
        },
        "column_mapping": {
            "type": "string",
            "description": "CSV only, required there: a JSON object, image_url and fields (by "
            "id or name) → column names. Absent with jsonl",
        },
        "mark_all_pending": {"type": "boolean", "default": False},
        "skip_near_duplicates": {
            "type": "integer",
            "minimum": 0,
            "maximum": 16,
            "description": SKIP_NEAR_DUPLICATES,
        },
    },
}
IMPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **WRITE_ERRORS,
    429: {
        "model": ErrorResponse,
        "description": (
            "The team already runs `IMPORT_MAX_CONCURRENT_PER_TEAM` imports (RATE_LIMITED)"
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        },
    },
}
FILE_RULES = """`format` is `csv` (the default) or `jsonl`. The file is UTF-8 (a BOM is
accepted) and at most `IMPORT_MAX_BYTES` (413).

**CSV**: `column_mapping` (required) maps `"image_url"` and fields to CSV column names; an empty
name means "not mapped". Fields are named by id or by name (names match ignoring case; an id
wins a clash; the key `"image_url"` is always the image column). A mapping naming an unknown
field (the message lists the schema's fields) or a field twice, or a column missing from the
header, is 400 before any row is read. The CSV is comma-separated, RFC 4180 quoted, header
first. Booleans accept true/false/yes/no/1/0, an empty cell is unset, fields with a
`default_value` get it when empty. Invalid rows and images that cannot be fetched are skipped
with `"Row N: reason"` (N = CSV line where the record starts, header = 1).

**JSONL** (JSON Lines, as the JSONL export writes it): one JSON object per line, blank lines
skipped; no `column_mapping` (giving one is 400). Each line has `image_url` (required), `data`
(fields by id or name → JSON values, checked exactly as `data` of a row create: unset values
dropped, defaults applied) and optional `status` (`pending` or `reviewed`: kept unless
`mark_all_pending`; when absent the status is computed). The export's other keys (`id`,
`image_hash`, `created_at`, `updated_at`, `created_by_email`, `updated_by_email`) are accepted
and ignored: an imported row gets a new id and timestamps, the importer as author, and the hash
of the image as fetched. Any other key, a line that is not valid JSON or not an object, or an
invalid value makes that line invalid: it is skipped with `"Line N: reason"` (N = line, the
first is 1).
"""
IMPORT_RULES = f"""{FILE_RULES}
At most 100 messages, in line order. Images already in the dataset or repeated in the file
count as `skipped_duplicates`. Rows are committed in batches of 500, so an interrupted import
keeps what it committed and a rerun adds only what is missing.

A team runs at most `IMPORT_MAX_CONCURRENT_PER_TEAM` imports at once, across all server
processes (both import operations count); one more is 429 RATE_LIMITED with `Retry-After`.
"""
JSON_IMPORT_DESCRIPTION = f"""Import rows from CSV or JSON Lines text given inline as JSON
`file_content`.

To upload a file, use `POST /api/v1/datasets/{{dataset_id}}/rows/import/file` (operation
`rows-import-file`, multipart/form-data). Web clients may also send that multipart form here;
it is documented only there, so that generated clients get one body type per operation.

{IMPORT_RULES}"""
FILE_IMPORT_DESCRIPTION = f"""Import rows from an uploaded CSV or JSON Lines file
(multipart/form-data).

Parts: `file`, and optional `format` (csv or jsonl; without it a file named `*.jsonl` or
`*.ndjson` is JSON Lines, any other CSV), `column_mapping` (CSV only, required there: a JSON
object, as a string) and `mark_all_pending` (true/false). The file is spooled to disk, not held
in memory.

{IMPORT_RULES}"""


@dataclass(frozen=True)
class ImportContext:
    """What both import operations need besides the request: caller, database, configuration."""

    user: User
    session: AsyncSession
    engine: AsyncEngine
    settings: Settings
    fetcher: ImageFetcher


async def import_context(
    user: CurrentUser,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    fetcher: ImageFetcherDep,
) -> ImportContext:
    """Gather the import operations' dependencies into one parameter."""
    return ImportContext(user, session, engine, settings, fetcher)


ImportContextDep = Annotated[ImportContext, Depends(import_context)]


async def _run_import(
    request: Request,
    read: Callable[..., Awaitable[ImportUpload]],
    *,
    dataset_id: uuid.UUID,
    context: ImportContext,
) -> ImportResult:
    """Check the dataset, take one of the team's import slots, then read the body and import.

    The body is read only once the slot is held, so refused requests cost no memory.
    """
    user, settings = context.user, context.settings
    await dataset_service.get_dataset(context.session, team_id=user.team_id, dataset_id=dataset_id)
    await context.session.commit()
    async with import_slot(
        context.engine, team_id=user.team_id, limit=settings.import_max_concurrent_per_team
    ):
        with await read(request, max_bytes=settings.import_max_bytes) as upload:
            return await import_service.import_rows(
                context.session,
                context.fetcher,
                user=user,
                dataset_id=dataset_id,
                lines=upload.lines,
                fmt=upload.format,
                column_mapping=upload.column_mapping,
                mark_all_pending=upload.mark_all_pending,
                concurrency=settings.import_concurrency,
                skip_near_duplicates=upload.skip_near_duplicates,
            )


@router.post(
    "/import",
    operation_id="rows-import",
    description=JSON_IMPORT_DESCRIPTION,
    response_model=ImportResult,
    responses=IMPORT_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ImportRequest.model_json_schema()}},
        }
    },
)
async def import_rows(
    dataset_id: uuid.UUID,
    request: Request,
    context: ImportContextDep,
) -> ImportResult:
    """Import rows from CSV or JSONL text given inline as JSON (see `JSON_IMPORT_DESCRIPTION`)."""
    return await _run_import(request, read_import_request, dataset_id=dataset_id, context=context)


@router.post(
    "/import/file",
    operation_id="rows-import-file",
    description=FILE_IMPORT_DESCRIPTION,
    response_model=ImportResult,
    responses=IMPORT_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": IMPORT_FORM_SCHEMA}},
        }
    },
)
async def import_rows_file(
    dataset_id: uuid.UUID,
    request: Request,
    context: ImportContextDep,
) -> ImportResult:
    """Import rows from an uploaded CSV or JSONL file (see `FILE_IMPORT_DESCRIPTION`)."""
    return await _run_import(request, read_file_import, dataset_id=dataset_id, context=context)


EXPORT_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer"},
    }
}
EXPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    429: {
        "model": ErrorResponse,
        "description": "The caller already runs `EXPORT_MAX_CONCURRENT_PER_USER` exports "
        "(RATE_LIMITED)",
        "headers": EXPORT_RETRY_AFTER,
    },
    503: {
        "model": ErrorResponse,
        "description": "The database is unreachable, or every connection of the export pool "
        "is streaming another export (SERVICE_UNAVAILABLE; `Retry-After` when busy)",
        "headers": EXPORT_RETRY_AFTER,
    },
}


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
        **EXPORT_ERRORS,
    },
)
async def export_rows(
    request: Request,
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    only_reviewed: Annotated[
        bool, Query(description="Only rows with status reviewed; false exports every row")
    ] = True,
    format: Annotated[ExportFormat, Query(description="csv or jsonl")] = "csv",
    formula_safe: Annotated[
        bool,
        Query(description="CSV only: a ' before text cells starting with = + - @ tab or CR"),
    ] = True,
    include_history: Annotated[
        bool,
        Query(description="JSONL only: each row with its `history` (see rows-history)"),
    ] = False,
    include_image_facts: Annotated[
        bool,
        Query(description="Add image_width, image_height, image_format, image_bytes, image_dhash"),
    ] = False,
) -> StreamingResponse:
    """Download the dataset's rows as a streamed file, oldest first.

    By default only reviewed rows are exported (an export is training data);
    `only_reviewed=false` exports every row. CSV columns: `image_url`, one column per field
    named by the field's name in position order, then `status`, `created_at`, `updated_at`,
    `updated_by` (email); booleans as true/false, unset values empty. JSONL: one object per
    row with `id`, `image_url`, `image_hash`, `status`, `data` (field name → value, set fields
    only), `created_at`, `updated_at`, `created_by_email`, `updated_by_email`. Memory stays
    flat at any size.

    With `formula_safe=true` (the default) a CSV text cell that starts with `=`, `+`, `-`, `@`,
    tab or carriage return gets a leading `'`, so that a spreadsheet shows it instead of running
    it as a formula (OWASP CSV injection guidance). Text cells are `image_url`, text and enum
    field values, `updated_by` and the field names in the header; numeric and boolean values,
    `status` and timestamps are never prefixed, so that a negative number such as `-5` stays a
    number. `formula_safe=false` writes every cell as stored; JSONL is never changed.

    With `include_history=true` (JSONL only, else 400) each line also has `history`: the
    row's entries oldest first, each `{action, changed_at, changed_by_email, changes}` with
    fields named as in `data`.

    With `include_image_facts=true` each row also carries its image facts: CSV gets the
    columns `image_width`, `image_height`, `image_format`, `image_bytes`, `image_dhash` after
    `updated_by`, JSONL the same keys; a row whose facts are not recorded yet has them empty
    (null).

    Each user may run `EXPORT_MAX_CONCURRENT_PER_USER` exports at once (default 2), counted
    across every server process sharing the database; one more answers `429 RATE_LIMITED` with
    `Retry-After`. Exports stream on a separate pool of `EXPORT_POOL_SIZE` connections (default
    4), so slow downloads never hold up other requests; when all of them are streaming, an
    export answers `503 SERVICE_UNAVAILABLE` with `Retry-After` (before the per-user cap is
    checked). A client that accepts no data for `EXPORT_SEND_TIMEOUT` seconds (default 30) is
    disconnected before the end of the body.
    """
    plan = await export_service.plan_export(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        only_reviewed=only_reviewed,
        fmt=format,
        formula_safe=formula_safe,
        include_history=include_history,
        include_image_facts=include_image_facts,
    )
    await session.close()  # The request's connection is not held while the body streams.
    lease = await export_slots.lease_export_connection(
        request.app.state.export_engine,
        user_id=user.id,
        max_concurrent=settings.export_max_concurrent_per_user,
    )
    return GuardedStreamingResponse(
        export_service.stream_export(lease, plan),
        send_timeout=settings.export_send_timeout,
        on_close=lease.release,
        media_type=export_service.MEDIA_TYPES[format],
        headers={"Content-Disposition": export_service.content_disposition(plan.filename)},
    )


THUMBNAIL_CACHE = "private, max-age=86400"


@router.get(
    "/{row_id}/thumbnail",
    operation_id="rows-thumbnail",
    response_class=Response,
    responses={
        200: {
            "description": "The thumbnail",
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not modified (`If-None-Match` named this thumbnail)"},
        **error_responses(400, 401, 403, 404, 409),
        429: {
            "model": ErrorResponse,
            "description": "This server already makes two thumbnails (RATE_LIMITED, with "
            "`Retry-After`)",
        },
    },
)
async def row_thumbnail(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
    size: Annotated[
        int, Query(description="Longer side in pixels", json_schema_extra={"enum": list(SIZES)})
    ] = 256,
) -> Response:
    """The row's image as a WebP thumbnail of at most `size` x `size` pixels (aspect kept).

    Made from the image on the first request for a size and kept in the database, so later
    requests, on any server, download nothing. `ETag` names the image and the size, and
    `Cache-Control` lets the browser keep it a day; `If-None-Match` with the tag answers 304. An
    image that can no longer be downloaded or decoded is 400; a URL that now serves another
    image than the row's (MD5) is 409. A server makes two thumbnails at once; a request for a
    new one beyond that is 429 with `Retry-After` (kept ones are always served).
    """
    if size not in SIZES:
        raise ValidationException.for_field("query.size", "must be 128, 256 or 512")
    made = await thumbnail_service.thumbnail(
        session, fetcher, team_id=user.team_id, dataset_id=dataset_id, row_id=row_id, size=size
    )
    headers = {"ETag": made.etag, "Cache-Control": THUMBNAIL_CACHE}
    if request.headers.get("if-none-match") == made.etag:
        return Response(status_code=304, headers=headers)
    return Response(made.content, media_type=made.media_type, headers=headers)


@router.get(
    "/{row_id}/history",
    operation_id="rows-history",
    response_model=RowHistoryPage,
    responses=READ_ERRORS,
)
async def row_history_page(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    params: PageDep,
) -> Page[RowHistoryEntry]:
    """A page of the row's history, newest first: its creation, every change of its values,
    status or image (a review lease alone is not a change), and its deletion, each with who
    and when. `changes` holds the whole row for `create` and `delete`, and each changed key as
    `[old, new]` for `update` (`data` by field id). Entries are written in the same transaction
    as the change, by the database, whatever made it (the API, an import, a bulk change, a
    field removed from the schema). A deleted row's history stays readable; deleting the
    dataset removes it."""
    return await row_history.row_history(
        session, team_id=user.team_id, dataset_id=dataset_id, row_id=row_id, params=params
    )


@router.get("/{row_id}", operation_id="rows-get", response_model=RowPublic, responses=READ_ERRORS)
async def get_row(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    data_keys: DataKeysDep,
) -> RowPublic:
    """One row of the dataset (404 when it belongs to another dataset)."""
    row = await row_service.get_row(
        session, team_id=user.team_id, dataset_id=dataset_id, row_id=row_id
    )
    return await row_output.public_row(
        session, row, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
    )


@router.post(
    "",
    operation_id="rows-create",
    status_code=201,
    response_model=RowPublic,
    responses=WRITE_ERRORS,
    description=f"""Add a row: the server downloads `image_url` and stores the image's MD5.

`data` maps fields to values, validated by each field's type and config; `null` and `""` mean
unset. Fields left out (or unset) that have a `default_value` get it. The status is `reviewed`
when every required field holds a value, else `pending`. An image already in the dataset (same
MD5) is 409 DUPLICATE. The URL must be http(s) on a public address; the image must be at most
`IMAGE_MAX_BYTES` (413) and arrive within `IMAGE_FETCH_TIMEOUT` seconds.

{DATA_KEYS_RULES}""",
)
async def create_row(
    dataset_id: uuid.UUID,
    data: RowCreate,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
    data_keys: DataKeysDep,
) -> RowPublic:
    """Add a row (see the operation's description)."""
    row = await row_service.create_row(
        session, fetcher, user=user, dataset_id=dataset_id, data=data
    )
    return await row_output.public_row(
        session, row, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
    )


@router.put(
    "/{row_id}",
    operation_id="rows-update",
    response_model=RowPublic,
    responses=WRITE_ERRORS,
    description=f"""Change a row. `data`, when given, replaces the whole map and recomputes the
status.

An explicit `status` wins over the computed one. A changed `image_url` is downloaded and hashed
again. `null` for any of the three keys means "leave unchanged".

{DATA_KEYS_RULES}""",
)
async def update_row(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    data: RowUpdate,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
    data_keys: DataKeysDep,
) -> RowPublic:
    """Change a row (see the operation's description)."""
    row = await row_service.update_row(
        session, fetcher, user=user, dataset_id=dataset_id, row_id=row_id, data=data
    )
    return await row_output.public_row(
        session, row, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
    )


@router.patch(
    "/{row_id}",
    operation_id="rows-patch",
    response_model=RowPublic,
    responses=WRITE_ERRORS,
    description=f"""Change part of a row. `data` is merged into the stored values key by key: a
key mapped to `null` (or `""`) unsets that field, keys left out keep their values, and the status
is recomputed from the result. Keys given as names are resolved to ids before the merge.

An explicit `status` wins over the computed one; `image_url` works as in `PUT`. Concurrent
PATCHes of different keys all take effect. `PUT` keeps its replace-the-whole-map semantics.

{DATA_KEYS_RULES}""",
)
async def patch_row(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    data: RowPatch,
    user: CurrentUser,
    session: SessionDep,
    fetcher: ImageFetcherDep,
    data_keys: DataKeysDep,
) -> RowPublic:
    """Change part of a row (see the operation's description)."""
    row = await row_service.update_row(
        session, fetcher, user=user, dataset_id=dataset_id, row_id=row_id, data=data, merge=True
    )
    return await row_output.public_row(
        session, row, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
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
    await row_service.delete_row(session, user=user, dataset_id=dataset_id, row_id=row_id)
    return Response(status_code=204)
