"""The claimable review queue: leases on pending rows, and per-reviewer progress.

A reviewer claims up to `count` of the oldest pending rows that nobody holds; each is leased to
them until `claim_expires_at`. The rows are picked with `FOR UPDATE SKIP LOCKED`, so reviewers
claiming at the same moment skip each other's rows instead of waiting for them or taking them
too: every row goes to exactly one claimer. A lease ends when the row is saved (PUT, PATCH, bulk
status), when its holder releases it, or when it expires; an expired lease needs no clean-up,
since the claim query treats it as free. When a reviewer's account is deleted, their leases end
with it (`claimed_by` is set to null).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnClause,
    ColumnElement,
    Interval,
    Row,
    and_,
    bindparam,
    func,
    literal_column,
)
from sqlalchemy import select as sa_select
from sqlalchemy import text, union_all, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from app.models.base import table_of
from app.models.dataset import Dataset
from app.models.row import DatasetRow, DatasetStats, ReviewerStats
from app.models.user import User
from app.services import dataset_service
from app.services.row_values import PENDING, REVIEWED

PENDING_LITERAL: ColumnClause[str] = literal_column(f"'{PENDING}'")
"""`'pending'` written into the statement, not bound: a partial index whose predicate names the
status serves only statements whose condition the planner can match to it in any plan."""


_DATASET: BindParameter[uuid.UUID] = bindparam("in_dataset")
_TEAM: BindParameter[uuid.UUID] = bindparam("of_team")
_COUNT: BindParameter[int] = bindparam("how_many")


def _first_free(held: ColumnElement[bool], *, by: Any) -> Select[uuid.UUID, datetime]:
    """The first `:how_many` pending rows (ordered `by`, then id) of the team's dataset that
    satisfy `held`, locked, skipping rows that concurrent claimers are locking."""
    owned = select(Dataset.id).where(Dataset.id == _DATASET, Dataset.team_id == _TEAM)
    return (
        select(col(DatasetRow.id), col(DatasetRow.created_at))
        .where(
            col(DatasetRow.dataset_id) == _DATASET,
            col(DatasetRow.status) == PENDING_LITERAL,
            held,
            owned.exists(),
        )
        .order_by(by, col(DatasetRow.id))
        .limit(_COUNT)
        .with_for_update(skip_locked=True)
    )


def _claim_statement() -> Any:
    """Lease the `:how_many` oldest free pending rows of dataset `:in_dataset` of team `:of_team`
    to `:to_user` for `:for_lease`, and read them back with their authors' emails, oldest first,
    in the same statement. Built once: composing it costs more than running it.

    Free rows are those never held or released, and those whose lease has run out. The two kinds
    are looked up apart, each on its own partial index (revision 0004) and in that index's order
    (rows nobody holds oldest first, expired leases longest expired first), and the candidates
    are merged oldest first. In one condition with OR, a claim would walk past every row
    currently leased, which slows claims as a team holds more rows. Leases are timed by the
    database's clock (`now()`), never a host's, so servers on several hosts agree on when a
    lease ends.

    The statement is Core, not ORM: the rows go straight to the response, so the session's
    identity map has nothing to gain from them, and a claim is one round trip, not two.
    """
    unclaimed = _first_free(
        col(DatasetRow.claimed_by).is_(None), by=col(DatasetRow.created_at)
    ).cte("unclaimed")
    expired = _first_free(
        and_(
            col(DatasetRow.claimed_by).is_not(None),
            col(DatasetRow.claim_expires_at) <= func.now(),
        ),
        by=col(DatasetRow.claim_expires_at),
    ).cte("expired")
    both = union_all(
        select(unclaimed.c.id, unclaimed.c.created_at), select(expired.c.id, expired.c.created_at)
    ).subquery()
    picked = select(both.c.id).order_by(both.c.created_at, both.c.id).limit(_COUNT)
    rows = table_of(DatasetRow)
    leased = (
        update(rows)
        .where(rows.c.id.in_(picked.scalar_subquery()))
        .values(
            claimed_by=bindparam("to_user"),
            claim_expires_at=func.now() + bindparam("for_lease", type_=Interval()),
        )
        .returning(*rows.c)
        .cte("leased")
    )
    creator = table_of(User).alias("creator")
    updater = table_of(User).alias("updater")
    return (
        sa_select(
            leased,
            creator.c.email.label("created_by_email"),
            updater.c.email.label("updated_by_email"),
        )
        .outerjoin(creator, creator.c.id == leased.c.created_by)
        .outerjoin(updater, updater.c.id == leased.c.updated_by)
        .order_by(leased.c.created_at, leased.c.id)
    )


CLAIM = _claim_statement()


async def claim_rows(
    session: AsyncSession,
    *,
    user: User,
    dataset_id: uuid.UUID,
    count: int,
    lease_seconds: int,
) -> Sequence[Row[Any]]:
    """Lease up to `count` of the oldest free pending rows to `user`; return them, oldest first.

    One statement picks, locks and leases the rows, checking the team in the same statement, and
    returns them with their authors' emails (`created_by_email`, `updated_by_email`) as the
    response needs them. Only when nothing was free is the dataset looked up, to tell an empty
    queue from another team's dataset.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    connection = await session.connection()
    claimed = await connection.execute(
        CLAIM,
        {
            "in_dataset": dataset_id,
            "of_team": user.team_id,
            "how_many": count,
            "to_user": user.id,
            "for_lease": timedelta(seconds=lease_seconds),
        },
    )
    leased: Sequence[Row[Any]] = claimed.all()
    if not leased:
        await dataset_service.get_dataset(session, team_id=user.team_id, dataset_id=dataset_id)
        return []
    await session.commit()
    return leased


async def release_rows(
    session: AsyncSession,
    *,
    user: User,
    dataset_id: uuid.UUID,
    row_ids: Sequence[uuid.UUID] | None,
) -> int:
    """End `user`'s leases on `row_ids` (all of theirs in the dataset when None).

    Rows that `user` does not hold are left alone. Returns how many leases ended.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    dataset = await dataset_service.get_dataset(
        session, team_id=user.team_id, dataset_id=dataset_id
    )
    release = (
        update(DatasetRow)
        .where(col(DatasetRow.dataset_id) == dataset.id, col(DatasetRow.claimed_by) == user.id)
        .values(claimed_by=None, claim_expires_at=None)
        .returning(col(DatasetRow.id))
    )
    if row_ids is not None:
        release = release.where(col(DatasetRow.id).in_(set(row_ids)))
    released = (await session.exec(release)).all()
    await session.commit()
    return len(released)


STATS_BY_REVIEWER = text("""
    SELECT u.id, u.email,
           count(*) FILTER (WHERE r.updated_at >= date_trunc('day', now() AT TIME ZONE 'UTC')
                                                   AT TIME ZONE 'UTC') AS today,
           count(*) AS total
      FROM dataset_rows r
      JOIN users u ON u.id = r.updated_by
     WHERE r.dataset_id = :dataset_id AND r.status = :reviewed
     GROUP BY u.id, u.email
     ORDER BY total DESC, u.email
    """)
"""Reviewed rows per last editor, in total and since midnight UTC (uses the status index)."""


async def review_stats(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID
) -> DatasetStats:
    """The dataset's counters, its active leases, and each reviewer's reviewed rows.

    A row counts for the user who last changed it while it is `reviewed`: the reviewer who set
    its status or saved its values, as the API records it.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
    """
    dataset = await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    claimed = await session.exec(
        select(func.count())
        .select_from(DatasetRow)
        .where(
            DatasetRow.dataset_id == dataset.id,
            col(DatasetRow.status) == PENDING_LITERAL,
            col(DatasetRow.claimed_by).is_not(None),
            col(DatasetRow.claim_expires_at) > func.now(),
        )
    )
    reviewers = await session.exec(  # type: ignore[call-overload]
        STATS_BY_REVIEWER, params={"dataset_id": dataset.id, "reviewed": REVIEWED}
    )
    return DatasetStats(
        rows_count=dataset.rows_count,
        pending_count=dataset.pending_count,
        claimed_count=claimed.one(),
        reviewers=[
            ReviewerStats(user_id=user_id, email=email, reviewed_today=today, reviewed_total=total)
            for user_id, email, today, total in reviewers.all()
        ],
    )
