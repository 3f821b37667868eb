"""Rows as the API returns them, with `data` keyed by field id (as stored) or by field name.

Every operation that returns rows takes `?data_keys=id|name` (`DataKeysDep` in
`app.routes.deps`) and passes its rows through `public_rows` (or `public_row`). With `id` this
costs no statement; with `name` it costs one, which reads the schema's field names.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.dataset import Dataset
from app.models.row import DataKeys, DatasetRow, RowPublic
from app.models.schema import SchemaField, field_order


async def field_names(
    session: AsyncSession, *, team_id: uuid.UUID, dataset_id: uuid.UUID
) -> dict[str, str]:
    """The dataset's field ids → names in field order, reached only through the caller's team
    (an empty map for another team's dataset)."""
    query = (
        select(SchemaField.id, SchemaField.name)
        .join(Dataset, col(Dataset.schema_id) == col(SchemaField.schema_id))
        .where(Dataset.id == dataset_id, Dataset.team_id == team_id)
        .order_by(*field_order())
    )
    return {str(field_id): name for field_id, name in (await session.exec(query)).all()}


def keyed_by_name(data: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """`data` (field id → value) keyed by field name, in field order.

    A key that names no field of `names` is kept as it is.
    """
    named = {name: data[field_id] for field_id, name in names.items() if field_id in data}
    named.update({key: value for key, value in data.items() if key not in names})
    return named


async def public_rows(
    session: AsyncSession,
    rows: Sequence[DatasetRow] | Sequence[Row[Any]],
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    data_keys: DataKeys,
) -> list[RowPublic]:
    """The response shape of `rows`, all of one dataset of the caller's team, with `data` keyed
    as `data_keys` asks. The rows are table objects loaded with their authors (as `WITH_AUTHORS`
    does) or result rows that carry every column and `created_by_email`, `updated_by_email`.

    The rows themselves are left as they are (they may still belong to the session).
    """
    names = None
    if data_keys == "name" and rows:
        names = await field_names(session, team_id=team_id, dataset_id=dataset_id)
    return [
        RowPublic.model_validate(
            row,
            from_attributes=True,
            update=None if names is None else {"data": keyed_by_name(row.data, names)},
        )
        for row in rows
    ]


async def public_row(
    session: AsyncSession,
    row: DatasetRow,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    data_keys: DataKeys,
) -> RowPublic:
    """The response shape of one row (see `public_rows`)."""
    rows = await public_rows(
        session, [row], team_id=team_id, dataset_id=dataset_id, data_keys=data_keys
    )
    return rows[0]
