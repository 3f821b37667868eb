"""Users of the caller's team."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.common.openapi import error_responses
from app.common.pagination import Page, PageDep
from app.models.user import (
    TempPassword,
    User,
    UserCreate,
    UserCreated,
    UserPage,
    UserPublic,
    UserUpdate,
)
from app.routes.deps import AdminUser, CurrentUser, SessionDep
from app.services import user_service

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "", operation_id="users-list", response_model=UserPage, responses=error_responses(400, 401, 403)
)
async def list_users(user: AdminUser, session: SessionDep, params: PageDep) -> Page[User]:
    """A page of the team's users, ordered by email (admin)."""
    return await user_service.list_users(session, team_id=user.team_id, params=params)


@router.get(
    "/{user_id}",
    operation_id="users-get",
    response_model=UserPublic,
    responses=error_responses(400, 401, 403, 404),
)
async def get_user(user_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> User:
    """One user of the caller's team."""
    return await user_service.get_user(session, team_id=user.team_id, user_id=user_id)


@router.post(
    "",
    operation_id="users-create",
    status_code=201,
    response_model=UserCreated,
    responses=error_responses(400, 401, 403, 409),
)
async def create_user(data: UserCreate, user: AdminUser, session: SessionDep) -> UserCreated:
    """Add a user to the team (admin); they must choose a new password at first login.

    Without `password` a strong one is generated. `temp_password` is shown only in this response.
    """
    created, password = await user_service.create_user(session, team_id=user.team_id, data=data)
    return UserCreated(user=UserPublic.model_validate(created), temp_password=password)


@router.put(
    "/{user_id}",
    operation_id="users-update",
    response_model=UserPublic,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, user: AdminUser, session: SessionDep
) -> User:
    """Change a user's role (admin). Demoting the team's last admin is 409 CONFLICT."""
    return await user_service.change_role(
        session, team_id=user.team_id, user_id=user_id, role=data.role
    )


@router.delete(
    "/{user_id}",
    operation_id="users-delete",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 409),
)
async def delete_user(user_id: uuid.UUID, user: AdminUser, session: SessionDep) -> Response:
    """Delete a user (admin). Not yourself (403), not the last admin (409).

    Schemas, datasets and rows the user created stay, with `created_by`/`updated_by` null.
    """
    await user_service.delete_user(session, team_id=user.team_id, user_id=user_id, actor_id=user.id)
    return Response(status_code=204)


@router.post(
    "/{user_id}/reset-password",
    operation_id="users-reset-password",
    response_model=TempPassword,
    responses=error_responses(400, 401, 403, 404),
)
async def reset_password(user_id: uuid.UUID, user: AdminUser, session: SessionDep) -> TempPassword:
    """Give a user a new temporary password (admin); revokes their tokens and requires a reset."""
    password = await user_service.reset_password(session, team_id=user.team_id, user_id=user_id)
    return TempPassword(temp_password=password)
