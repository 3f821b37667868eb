"""The page model and the `page`/`page_size` query parameters shared by every list."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Generic, Self, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field

T = TypeVar("T")

MAX_PAGE = 1_000_000
"""Deepest page accepted; beyond it a client is walking the data wrongly (400)."""
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageParams:
    """Validated paging input."""

    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        """Rows to skip before this page."""
        return (self.page - 1) * self.page_size


async def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page (1..100)")
    ] = 20,
) -> PageParams:
    """Read `page` and `page_size`; out-of-range values are rejected with 400."""
    return PageParams(page=page, page_size=page_size)


PageDep = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[T]):
    """One page of a list. A page past the end has empty `items`."""

    items: list[T]
    total: int
    page: int
    page_size: int
    total_pages: int

    @classmethod
    def build(cls, items: list[T], total: int, params: PageParams) -> Self:
        """Assemble a page from its items and the total count."""
        return cls(
            items=items,
            total=total,
            page=params.page,
            page_size=params.page_size,
            total_pages=math.ceil(total / params.page_size) if total else 0,
        )


class CursorPage(Page[T], Generic[T]):
    """A page that can also be reached, and continued, by cursor (row listings)."""

    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` to get the page after this one; null on the last page",
    )
    total_exact: bool = Field(
        default=True,
        description="False when a filtered list has more matches than were counted; "
        "`total` is then a lower bound",
    )

    def with_cursor(self, next_cursor: str | None, total_exact: bool) -> Self:
        """This page with its continuation and the exactness of its total."""
        return self.model_copy(update={"next_cursor": next_cursor, "total_exact": total_exact})
