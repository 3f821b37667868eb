"""Image backfills of the caller's team: start one (admins), follow them (any member)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.image_backfill import ImageBackfill, ImageBackfillPage, ImageBackfillPublic
from app.routes.deps import AdminUser, CurrentUser, SessionDep
from app.services import image_backfill

router = APIRouter(tags=["image backfills"])

READ_ERRORS = error_responses(400, 401, 403, 404)
START_DESCRIPTION = f"""Record the image facts (width, height, format, bytes, perceptual hash)
of the dataset's rows that have none: rows stored before the service recorded them. Admins
only. The answer is `202` with the backfill; the queue's workers re-download each image through
the same safe fetcher as new rows, {image_backfill.BATCH_SIZE} rows per transaction, and store
the facts when the image's MD5 is still the row's. A row whose URL now serves another image is
counted in `changed`, one that cannot be fetched or decoded in `failed`; both keep no facts.
Upgrading a database to this version queues one backfill per dataset by itself. One backfill per
dataset runs at a time: another while one is queued or running is 409."""


def _location(backfill: ImageBackfill) -> str:
    return f"/api/v1/image-backfills/{backfill.id}"


@router.post(
    "/datasets/{dataset_id}/image-backfills",
    operation_id="image-backfills-create",
    status_code=202,
    description=START_DESCRIPTION,
    response_model=ImageBackfillPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def start_backfill(
    dataset_id: uuid.UUID, response: Response, user: AdminUser, session: SessionDep
) -> ImageBackfill:
    backfill = await image_backfill.start(session, user=user, dataset_id=dataset_id)
    response.headers["Location"] = _location(backfill)
    return backfill


@router.get(
    "/datasets/{dataset_id}/image-backfills",
    operation_id="image-backfills-list",
    response_model=ImageBackfillPage,
    responses=READ_ERRORS,
)
async def list_backfills(
    dataset_id: uuid.UUID, user: CurrentUser, session: SessionDep, params: PageDep
) -> Page[ImageBackfill]:
    """A page of the dataset's image backfills, newest first."""
    found, total = await image_backfill.list_backfills(
        session, team_id=user.team_id, dataset_id=dataset_id, params=params
    )
    return Page[ImageBackfill].build(found, total, params)


@router.get(
    "/image-backfills/{backfill_id}",
    operation_id="image-backfills-get",
    response_model=ImageBackfillPublic,
    responses=READ_ERRORS,
)
async def get_backfill(
    backfill_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> ImageBackfill:
    """One image backfill of the team: its state and counts."""
    return await image_backfill.get_backfill(session, team_id=user.team_id, backfill_id=backfill_id)
