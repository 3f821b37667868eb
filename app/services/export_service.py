"""Streamed CSV and JSONL export of a dataset's rows.

Rows are read from a server-side cursor on a connection of the export's own (the request's
session is finished by the time the body streams), `FETCH_SIZE` at a time, and written out in
chunks, so memory stays flat whatever the dataset's size. PostgreSQL does the per-value work:
it extracts each field as text for CSV and builds each JSON line for JSONL, leaving Python to
join strings. A client that disconnects cancels the stream; the row reader is closed explicitly
(`aclosing`), which closes the cursor and hands the connection back to the pool at once rather
than whenever the garbage collector gets to it.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.row import ExportFormat
from app.models.schema import SchemaField
from app.services import dataset_service, schema_service

FETCH_SIZE = 2000
CHUNK_BYTES = 256 * 1024

MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


@dataclass(frozen=True)
class ExportPlan:
    """What to stream: the dataset, its fields in position order, and the options."""

    dataset_id: uuid.UUID
    dataset_name: str
    fields: Sequence[SchemaField]
    only_reviewed: bool
    format: ExportFormat

    @property
    def filename(self) -> str:
        return f"{self.dataset_name}.{self.format}"


async def plan_export(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    only_reviewed: bool,
    fmt: ExportFormat,
) -> ExportPlan:
    """Check access and read what the export needs, before the body starts streaming.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    fields = await schema_service.get_fields(session, schema_id=dataset.schema_id)
    return ExportPlan(dataset.id, dataset.name, fields, only_reviewed, fmt)


def content_disposition(filename: str) -> str:
    """An attachment header whose quoted filename is safe ASCII, with the exact name in RFC 5987.

    Quotes, backslashes, control characters and non-ASCII letters cannot break out of the
    header or inject another one.
    """
    stem, _, extension = filename.rpartition(".")
    safe_stem = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", stem).strip(" ._") or "export"
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{safe_stem}.{extension}\"; filename*=UTF-8''{encoded}"


def _rows_query(plan: ExportPlan, columns: str) -> Any:
    where = "r.dataset_id = :dataset_id"
    if plan.only_reviewed:
        where += " AND r.status = 'reviewed'"
    return text(f"""SELECT {columns}
              FROM dataset_rows r
              LEFT JOIN users c ON c.id = r.created_by
              LEFT JOIN users u ON u.id = r.updated_by
             WHERE {where}
             ORDER BY r.created_at, r.id""").bindparams(dataset_id=plan.dataset_id)


def _csv_query(plan: ExportPlan) -> Any:
    field_columns = "".join(f"r.data ->> :field_{index}, " for index in range(len(plan.fields)))
    query = _rows_query(
        plan,
        f"""r.image_url, {field_columns} r.status,
            to_char(r.created_at AT TIME ZONE 'UTC', '{_TIMESTAMP}'),
            to_char(r.updated_at AT TIME ZONE 'UTC', '{_TIMESTAMP}'),
            u.email""",
    )
    return query.bindparams(
        **{f"field_{index}": str(item.id) for index, item in enumerate(plan.fields)}
    )


def _jsonl_query(plan: ExportPlan) -> Any:
    data = """coalesce((SELECT jsonb_object_agg(f.name, r.data -> f.id)
                          FROM unnest(:field_ids, :field_names) AS f(id, name)
                         WHERE r.data ? f.id), '{}'::jsonb)"""
    line = f"""json_build_object(
        'id', r.id, 'image_url', r.image_url, 'image_hash', r.image_hash, 'status', r.status,
        'data', {data},
        'created_at', to_char(r.created_at AT TIME ZONE 'UTC', '{_TIMESTAMP}'),
        'updated_at', to_char(r.updated_at AT TIME ZONE 'UTC', '{_TIMESTAMP}'),
        'created_by_email', c.email, 'updated_by_email', u.email)::text"""
    return _rows_query(plan, line).bindparams(
        bindparam("field_ids", value=[str(item.id) for item in plan.fields], type_=ARRAY(TEXT)),
        bindparam("field_names", value=[item.name for item in plan.fields], type_=ARRAY(TEXT)),
    )


def _csv_header(plan: ExportPlan) -> list[str]:
    names = [item.name for item in plan.fields]
    return ["image_url", *names, "status", "created_at", "updated_at", "updated_by"]


async def _stream_rows(engine: AsyncEngine, query: Any) -> AsyncGenerator[Sequence[Any], None]:
    """Yield batches of result rows from a server-side cursor on a dedicated connection."""
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=FETCH_SIZE))
        async for partition in result.partitions(FETCH_SIZE):
            yield partition


async def _csv_chunks(engine: AsyncEngine, plan: ExportPlan) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_csv_header(plan))
    async with aclosing(_stream_rows(engine, _csv_query(plan))) as batches:
        async for rows in batches:
            writer.writerows(rows)
            if buffer.tell() >= CHUNK_BYTES:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


async def _jsonl_chunks(engine: AsyncEngine, plan: ExportPlan) -> AsyncIterator[bytes]:
    async with aclosing(_stream_rows(engine, _jsonl_query(plan))) as batches:
        async for rows in batches:
            yield "".join(f"{row[0]}\n" for row in rows).encode("utf-8")


def stream_export(engine: AsyncEngine, plan: ExportPlan) -> AsyncIterator[bytes]:
    """The export body, chunk by chunk (CSV with a header row, or one JSON object per line)."""
    if plan.format == "jsonl":
        return _jsonl_chunks(engine, plan)
    return _csv_chunks(engine, plan)
