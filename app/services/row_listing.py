"""Listing a dataset's rows: filters, a stable order, and pages by number or by cursor.

Every listing is ordered by a timestamp and then by id, so the order is total and a page can
continue from the last row of the one before ("keyset" paging): `WHERE (updated_at, id) <
(last_updated_at, last_id)` walks the `(dataset_id, [status,] timestamp, id)` index and costs the
same on page 1 and page 50,000, where `OFFSET` reads and drops every row before the page.

Filters combine with AND. Field filters (`app.domain.row_filters`) become SQL that the indexes of
revision 0003 serve: equality and option lists are JSONB containment (`data @> {...}`, GIN
`jsonb_path_ops`); ranges are type-safe JSON path predicates (a value of another type never
matches), checked row by row on what the other conditions leave, since no index serves them; `contains` is checked on the field's own text after a trigram pre-filter on all the row's string
values (GIN `gin_trgm_ops`); the full-text search `q` matches the words of the string values (their first 100,000
characters; GIN on `to_tsvector('simple', aitrace_row_words(data))`, no stemming, so it works
for any language); `url_contains` uses a trigram index on `image_url`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import operator
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    any_,
    case,
    cast,
    func,
    literal_column,
    or_,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH, UUID
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import QUERY_CANCELED, ValidationException, sqlstate_of
from app.common.pagination import CursorPage, PageParams
from app.domain.row_filters import FieldCondition, FieldFilter, FilterError, resolve
from app.models.dataset import Dataset
from app.models.row import ROW_WORDS, STRING_VALUES, DatasetRow, RowSort, RowStatus
from app.services import dataset_service
from app.services.row_service import WITH_AUTHORS, field_rules
from app.services.row_values import PENDING, REVIEWED

FILTERED_COUNT_CAP = 1_000
"""A filtered list counts its matches up to this many; beyond, `total` is a lower bound."""
MAX_CURSOR_LENGTH = 512
CURSOR_VERSION = 1

_SORT_COLUMNS: dict[str, tuple[Any, bool]] = {
    "created_at": (DatasetRow.created_at, False),
    "-created_at": (DatasetRow.created_at, True),
    "updated_at": (DatasetRow.updated_at, False),
    "-updated_at": (DatasetRow.updated_at, True),
}
_RANGE_SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_FULL_TEXT = text(f"{ROW_WORDS} @@ websearch_to_tsquery('simple'::regconfig, :search)")
_STRINGS = literal_column(f"({STRING_VALUES})::text", Text)


@dataclass(frozen=True)
class RowFilters:
    """What a listing keeps: every given criterion must hold (AND)."""

    status: RowStatus | None = None
    fields: tuple[FieldFilter, ...] = ()
    search: str | None = None
    image_hash: str | None = None
    url_contains: str | None = None
    created_by: uuid.UUID | None = None
    updated_by: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    image_formats: tuple[str, ...] = ()

    @property
    def narrows_beyond_status(self) -> bool:
        """Whether anything but the status filters, so the counters cannot give the total."""
        return any(
            value not in (None, ()) for name, value in asdict(self).items() if name != "status"
        )

    def fingerprint(self, dataset_id: uuid.UUID, sort: RowSort) -> str:
        """A short digest of the dataset, the order and the filters, bound into cursors."""
        described = json.dumps(
            [str(dataset_id), sort, asdict(self)],
            default=str,
            sort_keys=True,
        )
        return hashlib.sha256(described.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RowCursor:
    """Where the next page starts: after the row with this sort value and id.

    The cursor is opaque to clients (URL-safe base64 of a small JSON array). It is validated, not
    signed: it only says where to continue in a listing that is team-scoped in its own query, so
    a forged one reveals nothing; it carries the listing's fingerprint, so a cursor of another
    dataset, order or filter is refused with 400 instead of silently skipping rows.
    """

    query: str
    after: datetime
    row_id: uuid.UUID

    def encode(self) -> str:
        """The cursor as a client sees it."""
        payload = json.dumps(
            [CURSOR_VERSION, self.query, self.after.isoformat(), str(self.row_id)],
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, written: str, *, query: str) -> RowCursor:
        """Read a cursor given back by a client for the listing with fingerprint `query`.

        Raises:
            ValidationException: for a damaged cursor, or one made for another listing.
        """
        try:
            if len(written) > MAX_CURSOR_LENGTH:
                raise ValueError
            padded = written + "=" * (-len(written) % 4)
            version, fingerprint, after, row_id = json.loads(
                base64.urlsafe_b64decode(padded.encode("ascii"))
            )
            if not all(isinstance(part, str) for part in (fingerprint, after, row_id)):
                raise ValueError
            cursor = cls(
                query=fingerprint, after=datetime.fromisoformat(after), row_id=uuid.UUID(row_id)
            )
            if version != CURSOR_VERSION or cursor.after.tzinfo is None:
                raise ValueError
        except (ValueError, TypeError, UnicodeError, binascii.Error):
            raise ValidationException.for_field(
                "query.cursor", "not a cursor of this API; use next_cursor as given"
            ) from None
        if cursor.query != query:
            raise ValidationException.for_field(
                "query.cursor",
                "made for another listing (dataset, sort or filters differ); start again",
            )
        return cursor


URL_KEPT = "!$&'()*+,;=:@/?#[]~%"
"""Characters a stored (normalized) URL keeps as they are; others are percent-encoded."""


def url_spellings(term: str) -> list[str]:
    """`term` as typed and as it appears in a stored URL, which is percent-encoded (`café 1`
    is stored `caf%C3%A9%201` in a path and `caf%C3%A9+1` in a query)."""
    encoded = quote(term, safe=URL_KEPT)
    return list(dict.fromkeys([term, encoded, encoded.replace("%20", "+")]))


def _like_pattern(term: str) -> str:
    """`%term%` with LIKE's own characters escaped (escape character `\\`)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _json_text(term: str) -> str:
    """`term` as it appears inside a JSON string in `_STRINGS` (quotes and controls escaped)."""
    return json.dumps(term, ensure_ascii=False)[1:-1]


def _field_condition(condition: FieldCondition) -> ColumnElement[bool]:
    data = col(DatasetRow.data)
    key = condition.field_id
    if condition.op in ("eq", "in"):
        return or_(*(data.contains({key: value}) for value in condition.values))
    if condition.op == "contains":
        term = condition.values[0]
        return and_(
            _STRINGS.ilike(_like_pattern(_json_text(term)), escape="\\"),
            data[key].astext.ilike(_like_pattern(term), escape="\\"),
        )
    path = f'$."{uuid.UUID(key)}" ? (@ {_RANGE_SYMBOLS[condition.op]} $bound)'
    return func.jsonb_path_exists(
        data, cast(path, JSONPATH), cast({"bound": condition.values[0]}, JSONB)
    )


async def _conditions(
    session: AsyncSession, dataset: Dataset, filters: RowFilters
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a listing, the dataset's own first.

    Raises:
        ValidationException: for a field filter that does not fit the dataset's schema.
    """
    row = DatasetRow
    clauses: list[ColumnElement[bool]] = [col(row.dataset_id) == dataset.id]
    if filters.fields:
        rules = await field_rules(session, dataset, lock_schema=False)
        for index, written in enumerate(filters.fields):
            try:
                clauses.append(_field_condition(resolve(rules, written)))
            except FilterError as error:
                raise ValidationException.for_field(f"query.filter.{index}", str(error)) from None
    if filters.search is not None:
        clauses.append(_FULL_TEXT.bindparams(search=filters.search))  # type: ignore[arg-type]
    image_hash = None if filters.image_hash is None else filters.image_hash.lower()
    comparisons: list[tuple[Any, Any, Callable[[Any, Any], ColumnElement[bool]]]] = [
        (filters.status, row.status, operator.eq),
        (image_hash, row.image_hash, operator.eq),
        (filters.created_by, row.created_by, operator.eq),
        (filters.updated_by, row.updated_by, operator.eq),
        (filters.created_after, row.created_at, operator.ge),
        (filters.created_before, row.created_at, operator.lt),
        (filters.updated_after, row.updated_at, operator.ge),
        (filters.updated_before, row.updated_at, operator.lt),
        (filters.min_width, row.image_width, operator.ge),
        (filters.max_width, row.image_width, operator.le),
        (filters.min_height, row.image_height, operator.ge),
        (filters.max_height, row.image_height, operator.le),
    ]
    clauses.extend(
        compare(col(column), given) for given, column, compare in comparisons if given is not None
    )
    if filters.image_formats:
        clauses.append(col(row.image_format).in_(filters.image_formats))
    if filters.url_contains is not None:
        clauses.append(
            or_(
                *(
                    col(row.image_url).ilike(_like_pattern(spelling), escape="\\")
                    for spelling in url_spellings(filters.url_contains)
                )
            )
        )
    return clauses


def _among(ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """`id = ANY(:ids)`: one array parameter, however many ids."""
    return col(DatasetRow.id) == any_(cast(list(ids), ARRAY(UUID(as_uuid=True))))


def _counted(dataset: Dataset, status: RowStatus | None) -> int:
    """The number of rows with `status` (any when None), from the dataset's counters."""
    if status == PENDING:
        return dataset.pending_count
    if status == REVIEWED:
        return dataset.rows_count - dataset.pending_count
    return dataset.rows_count


@dataclass(frozen=True)
class _Matches:
    """What a listing narrowed beyond status found out before fetching its page.

    `ids` holds every matching row when there are at most `FILTERED_COUNT_CAP` of them, else None.
    """

    ids: list[uuid.UUID] | None

    @property
    def total(self) -> tuple[int, bool]:
        """The number of matches and whether it is exact (else it is a lower bound)."""
        if self.ids is None:
            return FILTERED_COUNT_CAP, False
        return len(self.ids), True


@asynccontextmanager
async def searching(
    session: AsyncSession, timeout: float, *, hint: str = "narrow it with another filter"
) -> AsyncIterator[None]:
    """Run a filtered listing's statements planned with their values and under `timeout`.

    asyncpg prepares each statement once per connection, and after five runs PostgreSQL may
    settle on a generic plan that ignores the values. For filters the values decide the plan: a
    rare word wants its GIN index, a word in every row does not (a generic plan took a search for
    a word in all of 1,000,000 rows from 3 to 75 ms). Always planning afresh would cost every
    request some milliseconds (the rows table has many indexes to weigh), so only filtered
    listings do. `statement_timeout` bounds what one member's costly search (a lone narrow range,
    a two-letter `contains`) can hold a connection for. Both are set for the session and reset
    afterwards; should the reset fail (a broken connection, or the timeout striking the reset
    itself), the connection is discarded rather than handed on with them.

    The near-duplicate searches run under it too, for the same reasons.

    Raises:
        ValidationException: when a statement ran longer than `timeout` seconds; the message
            ends with `hint`, what the caller can do about it.
    """
    await session.exec(  # type: ignore[call-overload]
        text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', false),"
            " set_config('statement_timeout', :limit, false)"
        ).bindparams(limit=f"{max(1, round(timeout * 1000))}ms")
    )
    try:
        yield
    except DBAPIError as error:
        await session.rollback()
        if sqlstate_of(error) != QUERY_CANCELED:
            raise
        raise ValidationException.for_field(
            "query",
            f"the search took longer than {timeout:g} s (SEARCH_TIMEOUT); {hint}",
        ) from None
    finally:
        try:
            await session.exec(text("RESET ALL"))  # type: ignore[call-overload]
        except SQLAlchemyError:
            await session.rollback()
            await (await session.connection()).invalidate()


async def _matches(session: AsyncSession, clauses: Sequence[ColumnElement[bool]]) -> _Matches:
    """Look for the matching rows, in no order, stopping after `FILTERED_COUNT_CAP` + 1.

    Unordered, the search can use whichever index suits the filters (a GIN bitmap for a rare
    word, a sequential read that stops early for a common value). A page is then cut from few
    matches by their ids, or, when there are many, by walking the listing's ordered index, which
    finds its page soon because matches are frequent. Ordering and limiting in one statement
    instead would leave the planner to guess which of the two is cheaper, and a wrong guess on a
    rare word walks the whole index.
    """
    found = select(col(DatasetRow.id)).where(*clauses).limit(FILTERED_COUNT_CAP + 1).subquery()
    few = func.count() <= FILTERED_COUNT_CAP
    summary = select(func.count(), case((few, func.array_agg(found.c.id)), else_=None))
    count, ids = (await session.exec(summary.select_from(found))).one()
    if count > FILTERED_COUNT_CAP:
        return _Matches(ids=None)
    return _Matches(ids=list(ids or ()))


async def _page(
    session: AsyncSession,
    clauses: Sequence[ColumnElement[bool]],
    params: PageParams,
    sort: RowSort,
    start: RowCursor | None,
) -> list[DatasetRow]:
    """The rows of the page after `start`, or else at `params.page` (one more than the page
    size, to tell whether another page follows)."""
    column, descending = _SORT_COLUMNS[sort]
    query = select(DatasetRow).options(*WITH_AUTHORS).where(*clauses)
    if start is not None:
        position = tuple_(column, col(DatasetRow.id))
        after = (start.after, start.row_id)
        query = query.where(position < after if descending else position > after)
    else:
        query = query.offset(params.offset)
    order = [col(column), col(DatasetRow.id)]
    query = query.order_by(*(item.desc() if descending else item for item in order))
    return list((await session.exec(query.limit(params.page_size + 1))).all())


async def list_rows(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    params: PageParams,
    filters: RowFilters = RowFilters(),
    sort: RowSort = "-updated_at",
    cursor: str | None = None,
    timeout: float = 5.0,
) -> CursorPage[DatasetRow]:
    """A page of the dataset's matching rows with their authors, in `sort` order (ties by id).

    The page is chosen by `cursor` (a `next_cursor` given back) or else by `params.page`;
    `next_cursor` is set whenever another page follows. A filtered search may run `timeout`
    seconds.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for a filter that does not fit the schema, a damaged or foreign
            cursor, a cursor combined with a page number other than 1, or a search that ran
            longer than `timeout`.
    """
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    clauses = await _conditions(session, dataset, filters)
    fingerprint = filters.fingerprint(dataset.id, sort)
    start = None
    if cursor is not None:
        if params.page != 1:
            raise ValidationException.for_field("query.page", "give either page or cursor")
        start = RowCursor.decode(cursor, query=fingerprint)
    if not filters.narrows_beyond_status:
        found = await _page(session, clauses, params, sort, start)
        total, exact = _counted(dataset, filters.status), True
    else:
        async with searching(session, timeout):
            matches = await _matches(session, clauses)
            if matches.ids is not None:
                clauses = [col(DatasetRow.dataset_id) == dataset.id, _among(matches.ids)]
            found = await _page(session, clauses, params, sort, start)
        total, exact = matches.total
    rows = found[: params.page_size]
    next_cursor = None
    if len(found) > params.page_size:
        last = rows[-1]
        column = _SORT_COLUMNS[sort][0]
        next_cursor = RowCursor(fingerprint, getattr(last, column.key), last.id).encode()
    return CursorPage[DatasetRow].build(rows, total, params).with_cursor(next_cursor, exact)


async def review_queue(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    params: PageParams,
    filters: RowFilters = RowFilters(),
    cursor: str | None = None,
    timeout: float = 5.0,
) -> CursorPage[DatasetRow]:
    """The pending rows that match `filters`, oldest first."""
    return await list_rows(
        session,
        team_id=team_id,
        dataset_id=dataset_id,
        params=params,
        filters=replace(filters, status=PENDING),
        sort="created_at",
        cursor=cursor,
        timeout=timeout,
    )
