"""The query parameters of row listings (`rows-list`, `rows-queue`): filters and the cursor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Query

from app.common.exceptions import ValidationException
from app.common.pagination import PageDep, PageParams
from app.common.validation import SearchText
from app.domain.row_filters import MAX_FILTERS, FieldFilter, FilterError
from app.models.row import DataKeys
from app.routes.deps import DataKeysDep, SettingsDep
from app.services.row_listing import MAX_CURSOR_LENGTH, RowFilters

MAX_FILTER_LENGTH = 2000
FILTER_DESCRIPTION = f"""A filter on a field's value, `field:op:value`; repeat for more (at most
{MAX_FILTERS}, all must hold). `field` is a field id or name (ids win; names ignore case); a field
of another schema is 400. Operators by type: boolean `eq` (true/false); numeric `eq`, `gt`, `gte`,
`lt`, `lte` (two filters make a range); enum `eq`, or `in` with a JSON array of options
(`label:in:["cat","dog"]`); text `eq` (exact) or `contains` (ignoring case). Example:
`filter=score:gte:0.5&filter=score:lt:0.9&filter=label:eq:cat`."""


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _field_filters(written: list[str]) -> tuple[FieldFilter, ...]:
    """Parse the `filter` parameters.

    Raises:
        ValidationException: for too many filters, or one that is not `field:op:value`.
    """
    if len(written) > MAX_FILTERS:
        raise ValidationException.for_field("query.filter", f"at most {MAX_FILTERS} filters")
    parsed = []
    for index, text in enumerate(written):
        try:
            if len(text) > MAX_FILTER_LENGTH:
                raise FilterError(f"must be at most {MAX_FILTER_LENGTH} characters")
            parsed.append(FieldFilter.parse(text))
        except FilterError as error:
            raise ValidationException.for_field(f"query.filter.{index}", str(error)) from None
    return tuple(parsed)


PixelBound = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**31 - 1,
        description="Image size bound in pixels, inclusive (`min_width`, `max_width`, "
        "`min_height`, `max_height`); rows whose image facts are not recorded yet never match",
    ),
]
ImageFormat = Literal["png", "jpeg", "gif", "webp", "bmp", "tiff", "avif", "heif"]


async def row_filters(
    filter: Annotated[list[str] | None, Query(description=FILTER_DESCRIPTION)] = None,
    q: Annotated[
        SearchText | None,
        Query(
            description="Full-text search: rows whose text values (text and enum fields) hold "
            'these words; `"a phrase"`, `or` and `-word` work as in web search engines. Words are '
            "matched whole and not stemmed."
        ),
    ] = None,
    image_hash: Annotated[
        str | None,
        Query(pattern="^[0-9a-fA-F]{32}$", description="Only the row with this image MD5"),
    ] = None,
    url_contains: Annotated[
        SearchText | None, Query(description="Only rows whose image URL contains this (any case)")
    ] = None,
    created_by: Annotated[uuid.UUID | None, Query(description="Created by this user")] = None,
    updated_by: Annotated[uuid.UUID | None, Query(description="Last changed by this user")] = None,
    created_after: Annotated[
        datetime | None, Query(description="Created at or after this time (UTC if no zone)")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="Created before this time")
    ] = None,
    updated_after: Annotated[
        datetime | None, Query(description="Last changed at or after this time")
    ] = None,
    updated_before: Annotated[
        datetime | None, Query(description="Last changed before this time")
    ] = None,
    min_width: PixelBound = None,
    max_width: PixelBound = None,
    min_height: PixelBound = None,
    max_height: PixelBound = None,
    image_format: Annotated[
        list[ImageFormat] | None,
        Query(description="Only images of these formats (repeat for more)"),
    ] = None,
) -> RowFilters:
    """Gather a listing's filters other than status; they combine with AND."""
    return RowFilters(
        fields=_field_filters(filter or []),
        search=q,
        image_hash=image_hash,
        url_contains=url_contains,
        created_by=created_by,
        updated_by=updated_by,
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        updated_after=_aware(updated_after),
        updated_before=_aware(updated_before),
        min_width=min_width,
        max_width=max_width,
        min_height=min_height,
        max_height=max_height,
        image_formats=tuple(sorted(set(image_format or []))),
    )


RowFiltersDep = Annotated[RowFilters, Depends(row_filters)]

CursorQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="`next_cursor` of the previous page: continue after it (then leave `page` "
        "out). Cursor pages cost the same at any depth; a cursor only works with the dataset, "
        "sort and filters it was made for (else 400).",
    ),
]


@dataclass(frozen=True)
class ListingRequest:
    """What both row listings read from the query (the page, the filters, the cursor and how to
    key `data`) and how long a filtered search may run."""

    params: PageParams
    filters: RowFilters
    data_keys: DataKeys
    cursor: str | None
    timeout: float


async def listing_request(
    params: PageDep,
    filters: RowFiltersDep,
    data_keys: DataKeysDep,
    settings: SettingsDep,
    cursor: CursorQuery = None,
) -> ListingRequest:
    """Gather the query parameters shared by `rows-list` and `rows-queue`, and the search
    timeout (`SEARCH_TIMEOUT`)."""
    return ListingRequest(
        params=params,
        filters=filters,
        data_keys=data_keys,
        cursor=cursor,
        timeout=settings.search_timeout,
    )


ListingDep = Annotated[ListingRequest, Depends(listing_request)]
