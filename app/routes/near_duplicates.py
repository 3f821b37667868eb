"""Near-duplicate images of a dataset of the caller's team (any member)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.openapi import error_responses
from app.models.row import (
    DataKeys,
    DatasetRow,
    NearDuplicateGroup,
    NearDuplicatePage,
    SimilarRow,
    SimilarRows,
)
from app.routes.deps import CurrentUser, DataKeysDep, SessionDep, SettingsDep
from app.routes.row_listing_params import CursorQuery
from app.services import near_duplicates, row_output
from app.services.near_duplicates import MAX_DISTANCE, MAX_GROUP, SCAN_SECONDS

router = APIRouter(tags=["rows"])

DISTANCE_RULES = f"""Images are compared by their 64-bit perceptual hash (a difference hash,
`image_dhash`): `max_distance` is how many of the 64 bits may differ (0 = the same hash; 0-4
finds re-encodings, resizes and small edits of one picture; 16 also finds looser matches and
more false ones). The search is indexed and exact (multi-index hashing on four 16-bit bands);
the smaller the distance, the faster. Rows whose image has no hash yet (stored before hashes
were recorded and not backfilled) are neither found nor searched from. At most {MAX_DISTANCE}."""


MaxDistance = Annotated[
    int, Query(ge=0, le=MAX_DISTANCE, description="Most bits that may differ (0-16)")
]


async def _similar_rows(
    session: AsyncSession,
    found: list[tuple[int, DatasetRow]],
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    data_keys: DataKeys,
) -> list[SimilarRow]:
    shown = await row_output.public_rows(
        session,
        [row for _, row in found],
        team_id=team_id,
        dataset_id=dataset_id,
        data_keys=data_keys,
    )
    return [SimilarRow(distance=distance, row=row) for (distance, _), row in zip(found, shown)]


@router.get(
    "/datasets/{dataset_id}/rows/{row_id}/similar",
    operation_id="rows-similar",
    response_model=SimilarRows,
    responses=error_responses(400, 401, 403, 404, 409),
    description=f"""The rows whose image is within `max_distance` bits of this row's image,
nearest first (then oldest first), at most `limit`; the row itself is left out.
409 when the row's image has no hash yet.

{DISTANCE_RULES}""",
)
async def similar_rows(
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    data_keys: DataKeysDep,
    settings: SettingsDep,
    max_distance: MaxDistance = 8,
    limit: Annotated[int, Query(ge=1, le=100, description="Most rows returned")] = 20,
) -> SimilarRows:
    found = await near_duplicates.similar(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        row_id=row_id,
        max_distance=max_distance,
        limit=limit,
        timeout=settings.search_timeout,
    )
    items = await _similar_rows(
        session, found, team_id=user.team_id, dataset_id=dataset_id, data_keys=data_keys
    )
    return SimilarRows(items=items)


@router.get(
    "/datasets/{dataset_id}/near-duplicates",
    operation_id="datasets-near-duplicates",
    response_model=NearDuplicatePage,
    responses=error_responses(400, 401, 403, 404),
    description=f"""Groups of near-duplicate images in the dataset: each group is a row and
the rows created after it whose image is within `max_distance` bits of it (at most {MAX_GROUP},
nearest first). Every pair of near-duplicates appears exactly once, in the group of its older
row; an image near several others is listed with all of them.

The listing walks the dataset in creation order. A page ends after `page_size` groups, after
about {SCAN_SECONDS:g} s of looking, or at the end; follow `next_cursor` until it is null (a
page may hold fewer groups, even none, when it ran out of time). `scanned` says how many rows a
page looked at. A cursor only works with the dataset and `max_distance` it was made for.

{DISTANCE_RULES}""",
)
async def near_duplicate_groups(
    dataset_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    data_keys: DataKeysDep,
    settings: SettingsDep,
    max_distance: MaxDistance = 4,
    page_size: Annotated[int, Query(ge=1, le=100, description="Most groups on a page")] = 20,
    cursor: CursorQuery = None,
) -> NearDuplicatePage:
    page = await near_duplicates.groups(
        session,
        team_id=user.team_id,
        dataset_id=dataset_id,
        max_distance=max_distance,
        page_size=page_size,
        cursor=cursor,
        timeout=settings.search_timeout,
    )
    anchors = await row_output.public_rows(
        session,
        [group.row for group in page.groups],
        team_id=user.team_id,
        dataset_id=dataset_id,
        data_keys=data_keys,
    )
    items = [
        NearDuplicateGroup(
            row=anchor,
            near=await _similar_rows(
                session,
                group.near,
                team_id=user.team_id,
                dataset_id=dataset_id,
                data_keys=data_keys,
            ),
        )
        for anchor, group in zip(anchors, page.groups)
    ]
    return NearDuplicatePage(items=items, next_cursor=page.next_cursor, scanned=page.scanned)
