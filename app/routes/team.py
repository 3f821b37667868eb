"""The caller's team."""

from __future__ import annotations

from fastapi import APIRouter

from app.common.openapi import error_responses
from app.models.team import Team, TeamPublic, TeamUpdate
from app.routes.deps import AdminUser, CurrentUser, SessionDep
from app.services import team_service

router = APIRouter(prefix="/team", tags=["team"])


@router.get(
    "", operation_id="team-get", response_model=TeamPublic, responses=error_responses(401, 403)
)
async def get_team(user: CurrentUser, session: SessionDep) -> Team:
    """The caller's team."""
    return await team_service.get_team(session, team_id=user.team_id)


@router.put(
    "",
    operation_id="team-update",
    response_model=TeamPublic,
    responses=error_responses(400, 401, 403),
)
async def update_team(data: TeamUpdate, user: AdminUser, session: SessionDep) -> Team:
    """Rename the caller's team (admin)."""
    return await team_service.update_team(session, team_id=user.team_id, data=data)
