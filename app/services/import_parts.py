"""Cutting an import file into parts of whole records, and reading a part back.

A background import keeps its file in PostgreSQL as parts of `PART_RECORDS` records each, so
that several workers can import one file at once. A part is the exact text of its records (with
any blank lines among them) and the line its text starts on; a CSV part is read back behind the
file's header, with line numbers shifted so that every message names the line of the original
file. A CSV record may span several lines (quoted line breaks): parts are cut between records,
as the CSV reader sees them, never inside one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from app.models.row import FileFormat
from app.services.import_service import JSON_WHITESPACE, text_lines

PART_RECORDS = 1000
"""Records (blank lines not counted) per part: two import batches."""


@dataclass(frozen=True)
class FilePart:
    """A run of whole records: the line its text starts on, how many records, the text."""

    first_line: int
    records: int
    text: str


@dataclass(frozen=True)
class SplitFile:
    """A file cut into parts: the CSV header's text ("" for JSONL) and the parts, lazily."""

    header: str
    parts: Iterator[FilePart]


class _LineTap:
    """Hands lines to the CSV reader and keeps those of the record being read."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        """The lines read since the last call."""
        taken, self.taken = self.taken, []
        return taken


Piece = tuple[list[str], bool]
"""The lines of one record, and whether it is blank."""


def _csv_pieces(tap: _LineTap) -> Iterator[Piece]:
    for record in csv.reader(tap):
        yield tap.take(), not any(value.strip() for value in record)


def _jsonl_pieces(lines: Iterable[str]) -> Iterator[Piece]:
    for line in lines:
        yield [line], not line.strip(JSON_WHITESPACE)


def _parts(pieces: Iterator[Piece], first_line: int) -> Iterator[FilePart]:
    """Group records into parts of `PART_RECORDS`; blank lines after the last record are left
    out."""
    start, line = first_line, first_line
    text: list[str] = []
    records = 0
    for lines, blank in pieces:
        if not text:
            start = line
        text.extend(lines)
        line += len(lines)
        records += not blank
        if records == PART_RECORDS:
            yield FilePart(start, records, "".join(text))
            text, records = [], 0
    if records:
        yield FilePart(start, records, "".join(text))


def split_file(lines: Iterable[str], fmt: FileFormat) -> SplitFile:
    """Cut a file (its lines as `newline=""` reads them, BOM removed) into parts.

    CSV: the first record is the header, kept apart; the parts hold the records after it.
    """
    if fmt == "jsonl":
        return SplitFile(header="", parts=_parts(_jsonl_pieces(lines), first_line=1))
    tap = _LineTap(lines)
    pieces = _csv_pieces(tap)
    header_lines = next(pieces, ([], True))[0]
    return SplitFile(header="".join(header_lines), parts=_parts(pieces, len(header_lines) + 1))


def part_lines(header: str, part: FilePart) -> tuple[Iterator[str], int]:
    """A part's lines as an import reads them (CSV: behind the header), and the offset to add
    to the line numbers it counts so that they are the original file's."""
    lines = text_lines(header + part.text, skip_bom=False)
    header_count = sum(1 for _ in text_lines(header, skip_bom=False))
    return lines, part.first_line - header_count - 1
