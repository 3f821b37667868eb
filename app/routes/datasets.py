"""Datasets of the caller's team (writes are admin-only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.dataset import Dataset, DatasetCreate, DatasetPage, DatasetPublic, DatasetUpdate
from app.models.row import DatasetStats
from app.routes.deps import AdminUser, CurrentUser, SessionDep
from app.services import dataset_service, review_service

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get(
    "",
    operation_id="datasets-list",
    response_model=DatasetPage,
    responses=error_responses(400, 401, 403),
)
async def list_datasets(user: CurrentUser, session: SessionDep, params: PageDep) -> Page[Dataset]:
    """A page of the team's datasets, newest first, with exact row counts."""
    return await dataset_service.list_datasets(session, team_id=user.team_id, params=params)


@router.get(
    "/{dataset_id}",
    operation_id="datasets-get",
    response_model=DatasetPublic,
    responses=error_responses(400, 401, 403, 404),
)
async def get_dataset(dataset_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Dataset:
    """One dataset of the team."""
    return await dataset_service.get_dataset(session, team_id=user.team_id, dataset_id=dataset_id)


@router.get(
    "/{dataset_id}/stats",
    operation_id="datasets-stats",
    response_model=DatasetStats,
    responses=error_responses(400, 401, 403, 404),
)
async def dataset_stats(
    dataset_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> DatasetStats:
    """Review progress: the row counters, the pending rows under an active lease, and per
    reviewer the reviewed rows they last changed, today (since 00:00 UTC) and in total."""
    return await review_service.review_stats(session, team_id=user.team_id, dataset_id=dataset_id)


@router.post(
    "",
    operation_id="datasets-create",
    status_code=201,
    response_model=DatasetPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def create_dataset(data: DatasetCreate, user: AdminUser, session: SessionDep) -> Dataset:
    """Create a dataset (admin) bound to a schema of the team (else 404).

    A name already used in the team (any case) is 409 DUPLICATE.
    """
    return await dataset_service.create_dataset(session, user=user, data=data)


@router.put(
    "/{dataset_id}",
    operation_id="datasets-update",
    response_model=DatasetPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def update_dataset(
    dataset_id: uuid.UUID, data: DatasetUpdate, user: AdminUser, session: SessionDep
) -> Dataset:
    """Rename or re-describe a dataset (admin); `schema_id` cannot change (400)."""
    return await dataset_service.update_dataset(
        session, user=user, dataset_id=dataset_id, data=data
    )


@router.delete(
    "/{dataset_id}",
    operation_id="datasets-delete",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404),
)
async def delete_dataset(dataset_id: uuid.UUID, user: AdminUser, session: SessionDep) -> Response:
    """Delete a dataset and all its rows (admin)."""
    await dataset_service.delete_dataset(session, team_id=user.team_id, dataset_id=dataset_id)
    return Response(status_code=204)
