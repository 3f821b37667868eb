"""Reading an import request (CSV or JSON Lines) in either of its two forms: JSON or multipart.

Memory per import stays close to one copy of the file. The JSON body is read into one buffer,
parsed once into the `file_content` string, and the buffer is dropped before any row is read;
the lines are then sliced from that one string as the reader asks for them. The multipart
form is spooled to a temporary file by Starlette and read from there.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from app.common.exceptions import MALFORMED_JSON, ValidationException
from app.models.row import FileFormat, ImportMapping, ImportRequest
from app.services.import_service import check_import_file, check_import_text, text_lines
from app.services.near_duplicates import MAX_DISTANCE

FORM_FIELDS = frozenset(
    {"file", "format", "column_mapping", "mark_all_pending", "skip_near_duplicates"}
)
FORMATS: dict[str, FileFormat] = {"csv": "csv", "jsonl": "jsonl"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
"""File names that make an upload JSON Lines when its form has no `format` part."""
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


@dataclass
class ImportUpload:
    """The file's lines and the options of one import; close it (or use `with`) when done."""

    lines: Iterable[str]
    format: FileFormat
    column_mapping: dict[str, str | None] | None
    mark_all_pending: bool
    skip_near_duplicates: int | None = None
    form: FormData | None = field(default=None, repr=False)
    file_name: str | None = None
    file_bytes: int = 0

    def __enter__(self) -> ImportUpload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.form is not None:
            for value in self.form.values():
                if isinstance(value, UploadFile):
                    value.file.close()


def _invalid_body(error: ValidationError, prefix: tuple[str, ...]) -> RequestValidationError:
    """Re-raise a model's errors as request validation errors located in the body."""
    errors: list[dict[str, Any]] = []
    for item in error.errors():
        errors.append({**item, "loc": (*prefix, *item["loc"])})
    return RequestValidationError(errors)


async def _read_body(request: Request) -> bytearray:
    """The request body in one buffer (Starlette's `Request.body()` keeps a second copy)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return body


def _parse_json_body(body: bytearray) -> ImportRequest:
    """Validate the JSON form, raising the same 400 errors as a declared body would."""
    try:
        return ImportRequest.model_validate_json(body)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise ValidationException(MALFORMED_JSON) from None
        raise _invalid_body(error, ("body",)) from None


async def _from_json(request: Request, max_bytes: int) -> ImportUpload:
    body = await _read_body(request)
    data = _parse_json_body(body)
    del body
    check_import_text(data.file_content, max_bytes=max_bytes, fmt=data.format)
    return ImportUpload(
        lines=text_lines(data.file_content),
        format=data.format,
        column_mapping=data.column_mapping,
        mark_all_pending=data.mark_all_pending,
        skip_near_duplicates=data.skip_near_duplicates,
    )


def _form_flag(value: Any) -> bool:
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValidationException.for_field("body.mark_all_pending", "must be true or false")


def _form_distance(value: Any) -> int | None:
    """The `skip_near_duplicates` part: absent or empty, or a whole number 0-16."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    word = value.strip() if isinstance(value, str) else ""
    if not (word.isascii() and word.isdigit() and int(word) <= MAX_DISTANCE):
        raise ValidationException.for_field(
            "body.skip_near_duplicates", f"must be a whole number from 0 to {MAX_DISTANCE}"
        )
    return int(word)


def _form_format(value: Any, upload: UploadFile) -> FileFormat:
    """The `format` part; without one (or an empty one), a file named `*.jsonl` or `*.ndjson`
    is JSON Lines, any other CSV."""
    if value is None or (isinstance(value, str) and not value.strip()):
        name = (upload.filename or "").lower()
        return "jsonl" if name.endswith(JSONL_SUFFIXES) else "csv"
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in FORMATS:
        raise ValidationException.for_field("body.format", "must be csv or jsonl")
    return FORMATS[word]


def _form_mapping(value: Any) -> dict[str, str | None] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationException.for_field("body.column_mapping", "a JSON object is required")
    try:
        return ImportMapping.model_validate({"column_mapping": json.loads(value)}).column_mapping
    except ValueError:
        raise ValidationException.for_field(
            "body.column_mapping", "must be a JSON object of strings"
        ) from None


async def _from_multipart(request: Request, max_bytes: int) -> ImportUpload:
    form = await request.form(max_files=1, max_fields=len(FORM_FIELDS))
    try:
        unknown = sorted(set(form.keys()) - FORM_FIELDS)
        if unknown:
            raise ValidationException.for_field(f"body.{unknown[0]}"[:200], "Unknown field")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationException.for_field("body.file", "a file part is required")
        fmt = _form_format(form.get("format"), upload)
        mapping = _form_mapping(form.get("column_mapping"))
        mark_all_pending = _form_flag(form.get("mark_all_pending", "false"))
        skip_near_duplicates = _form_distance(form.get("skip_near_duplicates"))
        size = await asyncio.to_thread(check_import_file, upload.file, max_bytes=max_bytes, fmt=fmt)
        lines = io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
    except BaseException:
        await form.close()
        raise
    return ImportUpload(
        lines=lines,
        format=fmt,
        column_mapping=mapping,
        mark_all_pending=mark_all_pending,
        skip_near_duplicates=skip_near_duplicates,
        form=form,
        file_name=printable_name(upload.filename),
        file_bytes=size,
    )


def printable_name(name: str | None) -> str | None:
    """A client's file name as it can be stored and shown: no control characters, 255 at most."""
    kept = "".join(char for char in name or "" if char.isprintable())[:255]
    return kept or None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_import_request(request: Request, *, max_bytes: int) -> ImportUpload:
    """Parse an import request: JSON `{file_content, format?, column_mapping?,
    mark_all_pending?}` or a multipart form with a `file` part and optional `format`,
    `column_mapping` (a JSON string) and `mark_all_pending` parts.

    Raises:
        ValidationException: for a malformed body, a missing part or an invalid option.
        PayloadTooLargeException: for a file over `max_bytes`.
    """
    if _is_multipart(request):
        return await _from_multipart(request, max_bytes)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json") or not content_type:
        return await _from_json(request, max_bytes)
    raise ValidationException("Content-Type must be application/json or multipart/form-data")


async def read_file_import(request: Request, *, max_bytes: int) -> ImportUpload:
    """Parse a file import request: only the multipart form of `read_import_request`.

    Raises:
        ValidationException: for another content type, a missing part or an invalid option.
        PayloadTooLargeException: for a file over `max_bytes`.
    """
    if not _is_multipart(request):
        raise ValidationException("Content-Type must be multipart/form-data")
    return await _from_multipart(request, max_bytes)
