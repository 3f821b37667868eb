"""Import from CSV or JSON Lines: read, convert by field type, fetch images, insert in batches.

Each format is a record source that turns the file's lines into candidates (an image URL and
checked values, by field id) or the reason a record is invalid: CSV cells are text converted by
field type (`parse_text`); a JSONL line is one JSON object whose `data` holds JSON values,
checked as a row's `data` on create (`validate_data`). One importer takes the candidates.

Rows go in batches of `BATCH_SIZE`: the batch's images are fetched `concurrency` at a time
with the shared safe fetcher, then the batch is written with one
`INSERT ... SELECT FROM unnest(...) ON CONFLICT (dataset_id, image_hash) DO NOTHING RETURNING`
and committed. The unique index decides duplicates (already in the dataset, or earlier in the
file), so an interrupted import keeps whole committed batches and a rerun adds only what is
missing. Memory holds one batch besides the file's text (the multipart form streams from a
temp file; the JSON form's lines are sliced from its one string). Reading hands the event loop
back every `YIELD_INTERVAL` seconds, so a file of invalid rows cannot stall the process.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, UUID
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import AppException, PayloadTooLargeException, ValidationException
from app.domain.field_keys import shown_key
from app.domain.field_types import FieldRule, FieldValueError, parse_text
from app.models.base import utcnow
from app.models.dataset import Dataset
from app.models.row import FileFormat, ImportResult, JsonlRow, RowStatus
from app.models.user import User
from app.services import dataset_service, near_duplicates
from app.services.image_columns import image_array_params, image_arrays
from app.services.image_fetch import FetchedImage, ImageFetcher
from app.services.row_service import field_rules
from app.services.row_values import PENDING, by_field_id, computed_status, validate_data

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_ERRORS = 100
IMAGE_COLUMN = "image_url"
READ_CHUNK = 1024 * 1024
YIELD_INTERVAL = 0.005
"""Longest stretch of reading, in seconds, before other requests get the event loop."""
FORMAT_LABELS: dict[str, str] = {"csv": "CSV", "jsonl": "JSONL"}
RECORD_LABELS: dict[str, str] = {"csv": "Row", "jsonl": "Line"}
"""How an import's messages name a record: `Row N` (CSV line where the record starts), or
`Line N` (JSONL line)."""
JSON_WHITESPACE = " \t\r\n"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
"""One line with its terminator, split as `newline=""` files are: at \\r\\n, \\r or \\n."""
_BOM = "\ufeff"

T = TypeVar("T")

csv.field_size_limit(sys.maxsize)

_INSERT = text("""INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                 created_by, updated_by, created_at, updated_at, image_width,
                                 image_height, image_format, image_bytes, image_dhash)
       SELECT u.id, :dataset_id, u.url, u.hash, CAST(u.data AS jsonb), u.status,
              author.id, author.id, :now, :now, u.width, u.height, u.format, u.bytes, u.dhash
         FROM unnest(:ids, :urls, :hashes, :datas, :statuses, :widths, :heights, :formats,
                     :sizes, :dhashes)
              AS u(id, url, hash, data, status, width, height, format, bytes, dhash)
         LEFT JOIN users AS author ON author.id = :user_id
       ON CONFLICT (dataset_id, image_hash) DO NOTHING
       RETURNING id""").bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("urls", type_=ARRAY(TEXT)),
    bindparam("datas", type_=ARRAY(TEXT)),
    bindparam("statuses", type_=ARRAY(TEXT)),
    *image_array_params(),
)


@dataclass
class _Candidate:
    """A record that converted cleanly and now needs its image; `status` when the file set it."""

    line: int
    image_url: str
    data: dict[str, Any]
    status: RowStatus | None = None
    image: FetchedImage | None = None

    @property
    def fetched(self) -> FetchedImage:
        """The image, once `_Importer._fetch_all` has fetched it (only such candidates are
        inserted)."""
        assert self.image is not None, "a candidate is inserted only after its fetch"
        return self.image


Record = tuple[int, "_Candidate | str | None"]
"""A record source's item: the line, and the candidate, or why the record is invalid, or None
for a blank line (sources yield those too, so that reading them is paced as well)."""


@dataclass
class Checkpoint:
    """What an import settled since its previous checkpoint, written with the batch's rows.

    Every record up to `through_line` is settled (imported, duplicate or invalid); `errors`
    holds every invalid record since the previous checkpoint, not only the first 100.
    """

    through_line: int
    imported: int
    skipped_duplicates: int
    errors: list[tuple[int, str]]
    final: bool

    @property
    def processed(self) -> int:
        """Records settled since the previous checkpoint."""
        return self.imported + self.skipped_duplicates + len(self.errors)


Saver = Callable[[AsyncSession, Checkpoint], Awaitable[None]]
"""Writes a checkpoint in the transaction of its batch, just before the commit; raising rolls
the batch back and stops the import."""


@dataclass
class _Tally:
    """The running counts and messages of one import, and what is not yet checkpointed."""

    label: str = "Row"
    imported: int = 0
    skipped_duplicates: int = 0
    skipped_invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    unsaved: Checkpoint = field(default_factory=lambda: Checkpoint(0, 0, 0, [], False))

    def invalid(self, line: int, reason: str) -> None:
        self.skipped_invalid += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((line, reason))
        self.unsaved.errors.append((line, reason))

    def written(self, imported: int, duplicates: int) -> None:
        """Count one batch's insert."""
        self.imported += imported
        self.skipped_duplicates += duplicates
        self.unsaved.imported += imported
        self.unsaved.skipped_duplicates += duplicates

    def checkpoint(self, through_line: int, *, final: bool) -> Checkpoint:
        """What is settled since the previous checkpoint; starts the next one."""
        done = self.unsaved
        done.through_line, done.final = through_line, final
        self.unsaved = Checkpoint(through_line, 0, 0, [], False)
        return done

    def result(self) -> ImportResult:
        """The response; messages in line order (image failures are found after value errors)."""
        return ImportResult(
            imported=self.imported,
            skipped_duplicates=self.skipped_duplicates,
            skipped_invalid=self.skipped_invalid,
            errors=[f"{self.label} {line}: {reason}" for line, reason in sorted(self.errors)],
        )


@dataclass(frozen=True)
class _Columns:
    """Where each mapped value sits in a CSV record."""

    image: int
    fields: list[tuple[FieldRule, int]]


def text_lines(content: str, *, skip_bom: bool = True) -> Iterator[str]:
    """The lines of `content` (after a leading BOM, with `skip_bom`) with their terminators,
    one slice at a time.

    Unlike `io.StringIO`, which copies the text into a buffer of 4 bytes per character, this
    holds no more than the current line besides `content` itself.
    """
    start = 1 if skip_bom and content.startswith(_BOM) else 0
    for match in _LINE.finditer(content, start):
        yield match.group()


def utf8_length(content: str) -> int:
    """The size of `content` in UTF-8, encoding at most `READ_CHUNK` characters at a time."""
    if content.isascii():
        return len(content)
    return sum(
        len(content[start : start + READ_CHUNK].encode("utf-8", "surrogatepass"))
        for start in range(0, len(content), READ_CHUNK)
    )


def check_import_text(content: str, *, max_bytes: int, fmt: FileFormat) -> None:
    """Check a file's text given inline (JSON form) without copying it.

    A NUL in CSV refuses the whole file; in JSONL it makes only its own line invalid.

    Raises:
        PayloadTooLargeException: when it is over `max_bytes` (as UTF-8).
        ValidationException: when CSV holds NUL characters.
    """
    label = FORMAT_LABELS[fmt]
    if len(content) > max_bytes or utf8_length(content) > max_bytes:
        raise PayloadTooLargeException(f"The {label} exceeds {max_bytes} bytes")
    if fmt == "csv" and "\x00" in content:
        raise ValidationException.for_field(
            "body.file_content", f"the {label} contains NUL characters"
        )


def check_import_file(handle: IO[bytes], *, max_bytes: int, fmt: FileFormat) -> int:
    """Check an uploaded file before any record is read: size, UTF-8, no NUL in CSV (in JSONL a
    NUL makes only its own line invalid); rewinds the file and returns its size in bytes.

    Raises:
        PayloadTooLargeException: when it is over `max_bytes`.
        ValidationException: when it is not UTF-8 text, or CSV holds NUL bytes.
    """
    label = FORMAT_LABELS[fmt]
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    handle.seek(0)
    while chunk := handle.read(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeException(f"The {label} exceeds {max_bytes} bytes")
        if fmt == "csv" and b"\x00" in chunk:
            raise ValidationException.for_field("file", f"the {label} contains NUL bytes")
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError:
            raise ValidationException.for_field("file", f"the {label} is not UTF-8 text") from None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ValidationException.for_field("file", f"the {label} is not UTF-8 text") from None
    handle.seek(0)
    return size


def _resolve_columns(
    mapping: Mapping[str, str | None], header: Sequence[str], rules: Sequence[FieldRule]
) -> _Columns:
    """Check `column_mapping` against the schema and the header, before any row is read.

    Fields are named by id or by name, as in a row's `data` (`by_field_id`); the key
    `"image_url"` is always the image column.

    Raises:
        ValidationException: for an unknown field or one named twice, a missing image column,
            or a column that is not in the header.
    """
    by_id = {rule.id: rule for rule in rules}
    field_columns = by_field_id(
        rules,
        {key: name for key, name in mapping.items() if key != IMAGE_COLUMN},
        location="column_mapping",
    )
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(name, index)

    def column(key: str, name: str) -> int:
        if name not in positions:
            raise ValidationException.for_field(
                f"column_mapping.{key}", f"column '{name}' is not in the CSV header"
            )
        return positions[name]

    image_name = mapping.get(IMAGE_COLUMN)
    if not image_name:
        raise ValidationException.for_field(
            f"column_mapping.{IMAGE_COLUMN}", "the image URL column must be mapped"
        )
    fields = [(by_id[key], column(key, name)) for key, name in field_columns.items() if name]
    return _Columns(image=column(IMAGE_COLUMN, image_name), fields=fields)


def _convert(
    record: Sequence[str], columns: _Columns, rules: Sequence[FieldRule]
) -> tuple[str, dict[str, Any]]:
    """Turn one CSV record into an image URL and stored values.

    Raises:
        ValueError: with the reason the record is invalid.
    """

    def cell(index: int) -> str:
        return record[index] if index < len(record) else ""

    image_url = cell(columns.image).strip()
    if not image_url:
        raise ValueError("image_url is empty")
    values: dict[str, Any] = {}
    for rule, index in columns.fields:
        raw = cell(index)
        if raw == "":
            continue
        try:
            values[rule.id] = parse_text(rule, raw)
        except FieldValueError as error:
            raise ValueError(f"Field '{rule.name}': {error}") from None
    try:
        return image_url, validate_data(rules, values, apply_defaults=True)
    except ValidationException as error:
        raise ValueError(error.message) from None


def _records(reader: Iterator[list[str]], line_offset: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Yield each record with the line number it starts on (the header is line 1, and
    `line_offset` is added to every number)."""
    line_of = getattr(reader, "line_num")
    while True:
        start = line_of + 1 + line_offset
        try:
            record = next(reader)
        except StopIteration:
            return
        line_of = getattr(reader, "line_num")
        yield start, record


def _csv_candidates(
    reader: Iterator[list[str]], columns: _Columns, rules: Sequence[FieldRule], line_offset: int
) -> Iterator[Record]:
    """The CSV record source: each record converted by `_convert`."""
    for line, record in _records(reader, line_offset):
        if not any(value.strip() for value in record):
            yield line, None
            continue
        try:
            image_url, data = _convert(record, columns, rules)
        except ValueError as error:
            yield line, str(error)
            continue
        yield line, _Candidate(line=line, image_url=image_url, data=data)


def _csv_source(
    lines: Iterable[str],
    mapping: Mapping[str, str | None],
    rules: Sequence[FieldRule],
    line_offset: int = 0,
) -> Iterator[Record]:
    """Read the header and check the mapping at once, then give the records one by one.

    Raises:
        ValidationException: for an empty CSV or a bad mapping, before any row is read.
    """
    reader = csv.reader(iter(lines))
    header = next(reader, None)
    if header is None:
        raise ValidationException.for_field("file", "the CSV is empty (no header row)")
    return _csv_candidates(reader, _resolve_columns(mapping, header, rules), rules, line_offset)


def _jsonl_problem(error: ValidationError) -> str:
    """Why a JSONL line is invalid, from the first problem pydantic found in it."""
    item = error.errors()[0]
    where = ".".join(shown_key(str(part)) for part in item["loc"])
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] in ("json_invalid", "string_unicode"):
        detail = message.removeprefix("Invalid JSON: ").replace("at line 1 column", "at column")
        return f"not valid JSON ({detail})"
    if item["type"] == "model_type":
        return "not a JSON object"
    if item["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if item["type"] == "missing":
        return f"{where} is missing"
    return f"{where}: {message}"


def _convert_jsonl(line: int, text: str, rules: Sequence[FieldRule]) -> _Candidate:
    """Turn one JSONL line into a candidate; `data` is checked as a row's `data` on create.

    Raises:
        ValueError: with the reason the line is invalid.
    """
    try:
        record = JsonlRow.model_validate_json(text.rstrip("\r\n"))
    except ValidationError as error:
        raise ValueError(_jsonl_problem(error)) from None
    image_url = record.image_url.strip()
    if not image_url:
        raise ValueError("image_url is empty")
    try:
        data = validate_data(rules, record.data, apply_defaults=True, location="data")
    except ValidationException as error:
        raise ValueError(error.message) from None
    return _Candidate(line=line, image_url=image_url, data=data, status=record.status)


def _jsonl_source(
    lines: Iterable[str], rules: Sequence[FieldRule], line_offset: int = 0
) -> Iterator[Record]:
    """The JSONL record source: one JSON object per line (line 1 + `line_offset` is the first),
    blank lines skipped."""
    for line, text in enumerate(lines, start=1 + line_offset):
        if not text.strip(JSON_WHITESPACE):
            yield line, None
            continue
        try:
            yield line, _convert_jsonl(line, text, rules)
        except ValueError as error:
            yield line, str(error)


async def paced(items: Iterator[T]) -> AsyncIterator[T]:
    """Yield the items, handing the event loop back every `YIELD_INTERVAL` seconds.

    Reading and converting records is CPU work with no I/O of its own (a file of invalid rows
    never reaches an image fetch), so without these pauses a large file would stall every other
    request of the process until it is read.
    """
    clock = time.monotonic
    pause_at = clock() + YIELD_INTERVAL
    for item in items:
        if clock() >= pause_at:
            await asyncio.sleep(0)
            pause_at = clock() + YIELD_INTERVAL
        yield item


class _Importer:
    """One import run: fetches each batch's images, then writes the batch."""

    def __init__(
        self,
        session: AsyncSession,
        fetcher: ImageFetcher,
        *,
        dataset: Dataset,
        user_id: uuid.UUID | None,
        mark_all_pending: bool,
        concurrency: int,
        label: str,
        saver: Saver | None,
        skip_near_duplicates: int | None,
    ) -> None:
        self.session, self.fetcher = session, fetcher
        self.dataset, self.user_id = dataset, user_id
        self.mark_all_pending, self.concurrency = mark_all_pending, concurrency
        self.saver = saver
        self.skip_near_duplicates = skip_near_duplicates
        self.tally = _Tally(label=label)

    async def run_batch(
        self, batch: list[_Candidate], *, through_line: int, final: bool = False
    ) -> None:
        """Fetch the batch's images, then insert and commit what remains valid, with the
        checkpoint through `through_line` when the import keeps them."""
        await self._insert(await self._fetch_all(batch), through_line, final)

    async def _fetch_all(self, batch: list[_Candidate]) -> list[_Candidate]:
        """Fetch images `concurrency` at a time; failures are counted as invalid rows."""
        gate = asyncio.Semaphore(self.concurrency)
        failures: dict[int, str] = {}

        async def fetch(candidate: _Candidate) -> None:
            async with gate:
                try:
                    image = await self.fetcher.fetch(candidate.image_url)
                    candidate.image, candidate.image_url = image, image.url
                except AppException as error:
                    failures[candidate.line] = error.message
                except Exception:
                    logger.exception("Unexpected failure fetching an image during import")
                    failures[candidate.line] = "image_url: could not download the image"

        await asyncio.gather(*(fetch(candidate) for candidate in batch))
        fetched = []
        for candidate in batch:
            if candidate.line in failures:
                self.tally.invalid(candidate.line, failures[candidate.line])
            else:
                fetched.append(candidate)
        return fetched

    def _status(
        self, candidate: _Candidate, rules: Sequence[FieldRule], data: Mapping[str, Any]
    ) -> RowStatus:
        """`pending` with `mark_all_pending`, else the status the file set, else computed."""
        if self.mark_all_pending:
            return PENDING
        return candidate.status or computed_status(rules, data)

    async def _without_near_duplicates(
        self, batch: list[_Candidate], max_distance: int
    ) -> list[_Candidate]:
        """The batch without the images within `max_distance` bits of a stored row's image or
        of an earlier image of the batch; those are counted as duplicates.

        See `near_duplicates.near_copies`, which also locks the dataset until the batch's commit.
        """
        copies = await near_duplicates.near_copies(
            self.session,
            dataset_id=self.dataset.id,
            dhashes=[candidate.fetched.facts.dhash for candidate in batch],
            max_distance=max_distance,
        )
        self.tally.written(0, sum(copies))
        return [candidate for candidate, copy in zip(batch, copies) if not copy]

    async def _insert(self, batch: list[_Candidate], through_line: int, final: bool) -> None:
        """Write one batch in its own transaction; image-index conflicts are duplicates.

        The schema's fields are re-read under a share lock and the values re-checked, so a
        schema change during a long import cannot leave stale values behind. The checkpoint
        (with a saver) goes in the same transaction, so counts never drift from the rows.
        """
        rules = await field_rules(self.session, self.dataset, lock_schema=True)
        if self.skip_near_duplicates is not None:
            batch = await self._without_near_duplicates(batch, self.skip_near_duplicates)
        valid: list[tuple[_Candidate, dict[str, Any]]] = []
        images: list[FetchedImage] = []
        for candidate in batch:
            try:
                data = validate_data(rules, candidate.data, apply_defaults=False)
            except ValidationException as error:
                self.tally.invalid(candidate.line, error.message)
                continue
            valid.append((candidate, data))
            images.append(candidate.fetched)
        if valid:
            result = await self.session.exec(  # type: ignore[call-overload]
                _INSERT.bindparams(
                    dataset_id=self.dataset.id,
                    user_id=self.user_id,
                    now=utcnow(),
                    ids=[uuid.uuid4() for _ in valid],
                    urls=[candidate.image_url for candidate, _ in valid],
                    datas=[json.dumps(data) for _, data in valid],
                    statuses=[self._status(candidate, rules, data) for candidate, data in valid],
                    **image_arrays(images),
                )
            )
            inserted = len(result.all())
            self.tally.written(inserted, len(valid) - inserted)
        if self.saver is not None:
            await self.saver(self.session, self.tally.checkpoint(through_line, final=final))
        await self.session.commit()


async def run_import(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    dataset: Dataset,
    user_id: uuid.UUID | None,
    records: Iterator[Record],
    label: str,
    mark_all_pending: bool,
    concurrency: int,
    saver: Saver | None = None,
    resume_after: int = 0,
    skip_near_duplicates: int | None = None,
) -> _Tally:
    """Import `records` into `dataset` in batches of `BATCH_SIZE`, each committed on its own.

    Args:
        user_id: Recorded as the rows' creator (None once that user is deleted).
        saver: Called in each batch's transaction with what it settled (see `Checkpoint`); a
            batch is then also committed after `BATCH_SIZE` invalid records, and once at the
            end with `final` set, even when nothing is left to insert.
        resume_after: Records starting on or before this line were settled by an earlier run
            and are skipped.
        skip_near_duplicates: Also skip, as duplicates, images within this many bits of a
            stored image of the dataset or of an earlier image of the file.
    """
    importer = _Importer(
        session,
        fetcher,
        dataset=dataset,
        user_id=user_id,
        mark_all_pending=mark_all_pending,
        concurrency=concurrency,
        label=label,
        saver=saver,
        skip_near_duplicates=skip_near_duplicates,
    )
    batch: list[_Candidate] = []
    last_line = resume_after
    async for line, candidate in paced(records):
        if line <= resume_after:
            continue
        last_line = line
        if isinstance(candidate, str):
            importer.tally.invalid(line, candidate)
        elif candidate is not None:
            batch.append(candidate)
        unsaved_errors = len(importer.tally.unsaved.errors) if saver else 0
        if len(batch) >= BATCH_SIZE or unsaved_errors >= BATCH_SIZE:
            await importer.run_batch(batch, through_line=last_line)
            batch = []
    if batch or saver is not None:
        await importer.run_batch(batch, through_line=last_line, final=True)
    return importer.tally


def record_source(
    lines: Iterable[str],
    fmt: FileFormat,
    column_mapping: Mapping[str, str | None] | None,
    rules: Sequence[FieldRule],
    line_offset: int = 0,
) -> Iterator[Record]:
    """The record source of the format; CSV checks its header and mapping here.

    `line_offset` is added to every line number (a part of a file starts past its line 1).

    Raises:
        ValidationException: for CSV without a mapping, an empty CSV or a bad mapping; for
            JSONL with a mapping (its lines name their fields themselves).
    """
    if fmt == "jsonl":
        if column_mapping:
            raise ValidationException.for_field(
                "column_mapping", "not used with format jsonl: each line's data names its fields"
            )
        return _jsonl_source(lines, rules, line_offset)
    if column_mapping is None:
        raise ValidationException.for_field("column_mapping", "required with format csv")
    return _csv_source(lines, column_mapping, rules, line_offset)


async def import_rows(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    user: User,
    dataset_id: uuid.UUID,
    lines: Iterable[str],
    fmt: FileFormat,
    column_mapping: Mapping[str, str | None] | None,
    mark_all_pending: bool,
    concurrency: int,
    skip_near_duplicates: int | None = None,
) -> ImportResult:
    """Import a CSV or JSON Lines file into a dataset.

    Args:
        lines: The file's text (BOM already removed), as lines read with `newline=""`.
        fmt: `csv` or `jsonl`.
        column_mapping: CSV only: `"image_url"` and fields (by id or name) → CSV column names
            (`""`: not mapped). Must be None (or empty) for JSONL.
        mark_all_pending: Store every row as `pending` instead of the computed status (or, in
            JSONL, the line's own `status`).
        concurrency: Images fetched at once (`IMPORT_CONCURRENCY`).
        skip_near_duplicates: See `run_import`.

    Returns:
        The counts, and up to 100 `"Row N: reason"` messages (N = CSV line, header = 1), or
        `"Line N: reason"` for JSONL (N = line, the first is 1).

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for a missing or unexpected mapping, an empty CSV or a bad
            mapping, before any row is read.
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    rules = await field_rules(session, dataset, lock_schema=False)
    await session.commit()
    tally = await run_import(
        session,
        fetcher,
        dataset=dataset,
        user_id=user.id,
        records=record_source(lines, fmt, column_mapping, rules),
        label=RECORD_LABELS[fmt],
        mark_all_pending=mark_all_pending,
        concurrency=concurrency,
        skip_near_duplicates=skip_near_duplicates,
    )
    logger.info(
        "Import (%s) into dataset %s: %d imported, %d duplicates, %d invalid",
        fmt,
        dataset.id,
        tally.imported,
        tally.skipped_duplicates,
        tally.skipped_invalid,
    )
    return tally.result()
