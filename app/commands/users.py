"""`aitrace user create-admin EMAIL [--team NAME]` and `aitrace user reset-password EMAIL`.

Both print a generated temporary password that must be replaced at first login, so that an
instance whose only admin lost their password (or was deleted) is recoverable without SQL.
They go through the same services as the API.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable

from pydantic import TypeAdapter, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, operator_command
from app.commands.database import (
    command_engine,
    load_command_settings,
    open_database,
    require_current_schema,
)
from app.common.database import create_sessionmaker
from app.common.exceptions import ConflictException, DuplicateException
from app.common.security import generate_password
from app.common.validation import Email
from app.models.auth import DEFAULT_TEAM_NAME, SetupInit
from app.models.team import Team
from app.models.user import User, UserCreate
from app.services import setup_service, team_service, user_service

EMAIL = TypeAdapter(Email)


def _email(value: str) -> str:
    """The email argument, validated and normalised as the API does.

    Raises:
        CommandError: (exit status 2) for an invalid address.
    """
    try:
        return EMAIL.validate_python(value.strip())
    except ValidationError:
        raise CommandError(f"not a valid email address: {value!r}", EXIT_USAGE) from None


def _run_in_session(work: Callable[[AsyncSession], Awaitable[str]]) -> int:
    """Open the configured database, bring its schema to head, run `work` and print its result."""
    settings = load_command_settings()
    with open_database(settings) as database:

        async def run() -> str:
            async with command_engine(database) as engine:
                await require_current_schema(engine, settings)
                async with create_sessionmaker(engine)() as session:
                    return await work(session)

        print(asyncio.run(run()))
    return EXIT_OK


def _team_label(team: Team) -> str:
    return f'"{team.name}" ({team.id})'


def _as_team_id(value: str) -> uuid.UUID | None:
    """`value` as a team id, or None when it is a name."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _choose_team(teams: list[Team], wanted: str | None) -> Team:
    """The team named (or with the id) `wanted`; without it, the only team there is.

    Raises:
        CommandError: (exit status 2) when `wanted` names no team, or several teams exist and
            `--team` is missing or ambiguous.
    """
    listing = ", ".join(_team_label(team) for team in teams[:10])
    if wanted is None:
        if len(teams) == 1:
            return teams[0]
        raise CommandError(
            f"this instance has {len(teams)} teams: choose one with --team NAME or --team ID "
            f"({listing})",
            EXIT_USAGE,
        )
    team_id = _as_team_id(wanted.strip())
    matches = [team for team in teams if team.id == team_id]
    matches = matches or [team for team in teams if team.name.lower() == wanted.strip().lower()]
    if not matches:
        raise CommandError(f"no team is named {wanted!r} (teams: {listing})", EXIT_USAGE)
    if len(matches) > 1:
        ids = ", ".join(str(team.id) for team in matches)
        raise CommandError(f"several teams are named {wanted!r}: pass its id ({ids})", EXIT_USAGE)
    return matches[0]


def _new_password_lines(user: User, password: str) -> list[str]:
    return [
        f"Temporary password: {password}",
        f"{user.email} must choose a new password when they first log in with it.",
    ]


async def _first_team(session: AsyncSession, email: str, team_name: str | None) -> str:
    """Set the instance up as `POST /setup/init` does, with a password to be replaced."""
    password = generate_password()
    try:
        data = SetupInit(email=email, password=password, team_name=team_name or DEFAULT_TEAM_NAME)
    except ValidationError as error:
        raise CommandError(f"invalid team name: {error.errors()[0]['msg']}", EXIT_USAGE) from None
    try:
        team, admin = await setup_service.initialize(session, data)
    except ConflictException:
        raise CommandError(
            "a team was created meanwhile: run the command again", EXIT_FAILED
        ) from None
    await user_service.set_password(session, admin, password, must_reset=True)
    return "\n".join(
        [
            f"Created the team {_team_label(team)} with its admin {admin.email}.",
            *_new_password_lines(admin, password),
        ]
    )


async def _create_admin(session: AsyncSession, email: str, team_name: str | None) -> str:
    if await user_service.find_by_email(session, email) is not None:
        raise CommandError(f"{email} is already registered", EXIT_FAILED)
    teams = await team_service.list_teams(session)
    if not teams:
        return await _first_team(session, email, team_name)
    team = _choose_team(teams, team_name)
    admin, password = await user_service.create_user(
        session, team_id=team.id, data=UserCreate(email=email, role="admin")
    )
    return "\n".join(
        [
            f"Added the admin {admin.email} to the team {_team_label(team)}.",
            *_new_password_lines(admin, password),
        ]
    )


@operator_command
def create_admin(args: argparse.Namespace) -> int:
    """Add an admin (creating the first team on an instance without any)."""
    email = _email(args.email)

    async def work(session: AsyncSession) -> str:
        try:
            return await _create_admin(session, email, args.team)
        except DuplicateException:
            raise CommandError(f"{email} is already registered", EXIT_FAILED) from None

    return _run_in_session(work)


async def _reset_password(session: AsyncSession, email: str) -> str:
    user = await user_service.find_by_email(session, email)
    if user is None:
        raise CommandError(f"no user has the email {email}", EXIT_FAILED)
    password = await user_service.reset_password(session, team_id=user.team_id, user_id=user.id)
    return "\n".join(
        [
            f"Reset the password of {user.email}; their sessions and tokens are revoked.",
            *_new_password_lines(user, password),
        ]
    )


@operator_command
def reset_password(args: argparse.Namespace) -> int:
    """Give a user a new temporary password and revoke their tokens."""
    email = args.email.strip()
    return _run_in_session(lambda session: _reset_password(session, email))
