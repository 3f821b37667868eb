"""Streamed CSV and JSONL export of a dataset's rows.

The rows are streamed with `COPY (SELECT ...) TO STDOUT` on a connection leased from the export
pool (see `export_slots`; the request's session is closed before the body streams): PostgreSQL
formats every value in C (CSV quoting, booleans as true/false, JSON objects), asyncpg hands
over one socket read at a time, and a small bounded queue passes those chunks to the response,
so memory stays flat whatever the dataset's size and the server does almost no per-row Python
work. COPY reads the query's result as a stream, like a server-side cursor, without
materialising it.

CSV cells can be made formula-safe (OWASP's CSV injection guidance): a text cell starting with
`=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, so that a spreadsheet shows it
as text instead of evaluating it. The prefix is added in the SELECT, so COPY keeps its speed.
Only text cells get it (the image URL, text and enum fields, the email, and the header's field
names): numbers, booleans, statuses and timestamps are never formulas, and a negative number
such as `-5` must stay a number in training data.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import ValidationException
from app.models.row import ExportFormat
from app.models.schema import SchemaField
from app.services import dataset_service, schema_service
from app.services.export_slots import ExportLease

QUEUE_CHUNKS = 8
"""Chunks (one socket read each) buffered between PostgreSQL and the client."""

MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

FORMULA_TRIGGERS = "=+-@\t\r"
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""

TEXT_FIELD_TYPES = frozenset({"text", "enum"})
"""Field types whose values are text, and so may need the formula prefix."""


@dataclass(frozen=True)
class CopySpec:
    """A SELECT for `COPY ... TO STDOUT (FORMAT csv)`, its arguments, and CSV options."""

    select: str
    args: list[Any]
    delimiter: str | None = None
    quote: str | None = None


@dataclass(frozen=True)
class ExportPlan:
    """What to stream: the dataset, its fields in position order, and the options."""

    dataset_id: uuid.UUID
    dataset_name: str
    fields: Sequence[SchemaField]
    only_reviewed: bool
    format: ExportFormat
    formula_safe: bool = True
    include_history: bool = False
    include_image_facts: bool = False

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
    formula_safe: bool = True,
    include_history: bool = False,
    include_image_facts: bool = False,
) -> ExportPlan:
    """Check access and read what the export needs, before the body starts streaming.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for `include_history` with CSV (a history does not fit a cell).
    """
    if include_history and fmt != "jsonl":
        raise ValidationException.for_field(
            "query.include_history", "only with format jsonl (a history does not fit a CSV cell)"
        )
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    fields = await schema_service.get_fields(session, schema_id=dataset.schema_id)
    return ExportPlan(
        dataset.id,
        dataset.name,
        fields,
        only_reviewed,
        fmt,
        formula_safe,
        include_history,
        include_image_facts,
    )


def content_disposition(filename: str) -> str:
    """An attachment header whose quoted filename is safe ASCII, with the exact name in RFC 5987.

    Quotes, backslashes, control characters and non-ASCII letters cannot break out of the
    header or inject another one.
    """
    stem, _, extension = filename.rpartition(".")
    safe_stem = re.sub(r"[^A-Za-z0-9 ._()-]+", "_", stem).strip(" ._") or "export"
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{safe_stem}.{extension}\"; filename*=UTF-8''{encoded}"


def formula_safe_text(value: str) -> str:
    """`value` with a `'` in front when it starts with a formula trigger."""
    return f"'{value}" if value[:1] and value[0] in FORMULA_TRIGGERS else value


def _formula_safe_sql(expression: str) -> str:
    """The SQL text `expression` with a `'` in front when it starts with a formula trigger.

    `ascii()` gives the first character's code point, so the test is a few integer
    comparisons per cell; NULL stays NULL (an unset cell stays empty).
    """
    codes = ", ".join(str(ord(char)) for char in sorted(FORMULA_TRIGGERS))
    return (
        f"CASE WHEN ascii({expression}) IN ({codes}) "
        f"THEN '''' || {expression} ELSE {expression} END"
    )


def _select(plan: ExportPlan, columns: str) -> str:
    """The export's SELECT; `$1` is the dataset id."""
    where = "r.dataset_id = $1" + (" AND r.status = 'reviewed'" if plan.only_reviewed else "")
    return f"""SELECT {columns}
                 FROM dataset_rows r
                 LEFT JOIN users c ON c.id = r.created_by
                 LEFT JOIN users u ON u.id = r.updated_by
                WHERE {where}
                ORDER BY r.created_at, r.id"""


def _timestamp(column: str) -> str:
    """ISO 8601 in UTC (`2026-01-15T10:30:00.123456+00:00`), PostgreSQL's JSON timestamp form."""
    return f"(to_json({column}) #>> '{{}}')"


def _csv_copy(plan: ExportPlan) -> CopySpec:
    """CSV rows (no header): each field as text via `data ->> field id`, booleans as true/false.

    With `formula_safe`, text cells go through `_formula_safe_sql`.
    """

    def text(expression: str) -> str:
        return _formula_safe_sql(expression) if plan.formula_safe else expression

    values = [
        (
            text(f"(r.data ->> ${index + 2})")
            if item.type in TEXT_FIELD_TYPES
            else f"r.data ->> ${index + 2}"
        )
        for index, item in enumerate(plan.fields)
    ]
    columns = ", ".join(
        [
            text("r.image_url"),
            *values,
            "r.status",
            _timestamp("r.created_at"),
            _timestamp("r.updated_at"),
            text("u.email"),
            *(IMAGE_FACT_COLUMNS.values() if plan.include_image_facts else ()),
        ]
    )
    return CopySpec(_select(plan, columns), [plan.dataset_id, *(str(f.id) for f in plan.fields)])


IMAGE_FACT_COLUMNS = {
    "image_width": "r.image_width",
    "image_height": "r.image_height",
    "image_format": "r.image_format",
    "image_bytes": "r.image_bytes",
    "image_dhash": "lpad(to_hex(r.image_dhash), 16, '0')",
}
"""The image facts `include_image_facts` adds, after the contract's columns or keys, by name;
the hash as 16 hex digits, as rows show it (unrecorded facts are empty or null)."""
HISTORY_JSON = """coalesce((SELECT jsonb_agg(jsonb_build_object(
        'action', h.action, 'changed_at', h.changed_at, 'changed_by_email', hu.email,
        'changes', h.changes) ORDER BY h.id)
      FROM row_history h LEFT JOIN users hu ON hu.id = h.changed_by
     WHERE h.dataset_id = r.dataset_id AND h.row_id = r.id)::text, '[]')"""
"""A row's history as a JSON array, oldest first (`changes` with field ids, replaced by names
like `data`)."""


def _jsonl_copy(plan: ExportPlan) -> CopySpec:
    """One JSON object per row, assembled by PostgreSQL as text.

    Building the line by concatenating JSON fragments (`to_json` escapes each string) runs
    about twice as fast as `json_build_object`. `data` is the stored JSONB text with each field
    id key replaced by the field's JSON-encoded name: in JSON text an unescaped `"<id>": ` can
    only be a key, because quotes inside strings are escaped. COPY's CSV mode with control
    characters as delimiter and quote writes each line as it is (PostgreSQL's JSON escapes every
    control character, so neither can occur), whereas its text mode would double backslashes.
    """
    args: list[Any] = [plan.dataset_id]
    for item in plan.fields:
        args += [f'"{item.id}": ', json.dumps(item.name, ensure_ascii=False) + ": "]

    def keyed_by_name(json_text: str) -> str:
        for index in range(2, len(args), 2):
            json_text = f"replace({json_text}, ${index}, ${index + 1})"
        return json_text

    history = (
        f", \"history\": ' || {keyed_by_name(HISTORY_JSON)} || '" if plan.include_history else ""
    )
    if plan.include_image_facts:
        history += "".join(
            f", \"{name}\": ' || coalesce(to_json({value})::text, 'null') || '"
            for name, value in IMAGE_FACT_COLUMNS.items()
        )
    line = f"""'{{"id": "' || r.id || '", "image_url": ' || to_json(r.image_url)
        || ', "image_hash": "' || r.image_hash || '", "status": "' || r.status
        || '", "data": ' || {keyed_by_name("r.data::text")}
        || ', "created_at": ' || to_json(r.created_at) || ', "updated_at": ' || to_json(r.updated_at)
        || ', "created_by_email": ' || coalesce(to_json(c.email)::text, 'null')
        || ', "updated_by_email": ' || coalesce(to_json(u.email)::text, 'null') || '{history}}}'"""
    return CopySpec(_select(plan, line), args, delimiter="\x02", quote="\x01")


def _csv_header(plan: ExportPlan) -> bytes:
    buffer = io.StringIO()
    names = [item.name for item in plan.fields]
    if plan.formula_safe:
        names = [formula_safe_text(name) for name in names]
    csv.writer(buffer, lineterminator="\n").writerow(
        [
            "image_url",
            *names,
            "status",
            "created_at",
            "updated_at",
            "updated_by",
            *(IMAGE_FACT_COLUMNS if plan.include_image_facts else ()),
        ]
    )
    return buffer.getvalue().encode("utf-8")


async def _copy_out(lease: ExportLease, spec: CopySpec) -> AsyncGenerator[bytes, None]:
    """Stream `COPY ... TO STDOUT` output through a bounded queue, chunk by chunk.

    asyncpg pushes chunks to a callback and stops reading the socket while the callback waits,
    so a slow client slows PostgreSQL down instead of filling memory. When the consumer stops
    early (the client went away or stalled), the copy is cancelled and the lease stays
    incomplete, so that its connection is discarded rather than returned to the pool mid-COPY.
    """
    chunks: asyncio.Queue[bytes | bytearray | BaseException | None] = asyncio.Queue(
        maxsize=QUEUE_CHUNKS
    )

    async def produce() -> None:
        try:
            await lease.driver.copy_from_query(
                spec.select,
                *spec.args,
                output=chunks.put,
                format="csv",
                delimiter=spec.delimiter,
                quote=spec.quote,
            )
        except Exception as error:
            await chunks.put(error)
        else:
            await chunks.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (chunk := await chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield bytes(chunk)
        await producer
        lease.complete = True
    finally:
        if not producer.done():
            producer.cancel()
            with suppress(asyncio.CancelledError):
                await producer


async def _csv_chunks(lease: ExportLease, plan: ExportPlan) -> AsyncGenerator[bytes, None]:
    yield _csv_header(plan)
    async with aclosing(_copy_out(lease, _csv_copy(plan))) as chunks:
        async for chunk in chunks:
            yield chunk


def stream_export(lease: ExportLease, plan: ExportPlan) -> AsyncGenerator[bytes, None]:
    """The export body, chunk by chunk (CSV with a header row, or one JSON object per line).

    The COPY runs on the lease's connection; whoever consumes the generator closes it and then
    releases the lease.
    """
    if plan.format == "jsonl":
        return _copy_out(lease, _jsonl_copy(plan))
    return _csv_chunks(lease, plan)
