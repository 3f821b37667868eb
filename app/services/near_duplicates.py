"""Near-duplicate images: rows whose perceptual hashes differ in few bits.

Each row keeps the 64-bit difference hash of its image (`app.domain.images`). Two images are
near-duplicates when their hashes differ in at most `max_distance` bits (the Hamming distance).

Searching is multi-index hashing: the hash is indexed as 4 bands of 16 bits
(`app.models.row.hash_band`). Give each band a radius r_i with r_0 + r_1 + r_2 + r_3 = d - 3
(all 0 when d < 4). When two hashes differ in at most d bits, some band i differs in at most
r_i bits: were every band i off by r_i + 1 or more, the hashes would differ in at least
d - 3 + 4 = d + 1 bits. A search therefore lists, for each band, every 16-bit value within r_i
bits of the query's band (`probes`; the radii are as even as can be, so d = 16 probes 2,517
values on one band and 697 on each of the others, d = 8 probes 137 and 3 x 17), reads the rows
holding one of them through the 4 band indexes, and keeps those whose whole hash is within d.
The search is exact: no row within the distance is missed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import bindparam, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, UUID
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.advisory_slots import hold_until_commit, slot_key
from app.common.exceptions import ConflictException
from app.domain.images import HASH_BITS
from app.models.row import BAND_BITS, HASH_BANDS, DatasetRow, hash_band
from app.services import dataset_service
from app.services.row_listing import RowCursor, searching
from app.services.row_service import WITH_AUTHORS, get_row

MAX_DISTANCE: Final = 16
"""The largest Hamming distance a search accepts."""
MAX_GROUP: Final = 100
"""The most near-duplicates listed with one row of the near-duplicates listing."""
SCAN_SECONDS: Final = 0.5
"""How long one page of the near-duplicates listing looks for groups before it answers with
what it found and a cursor to go on from."""
_ANCHOR_BATCH: Final = 200
_LOCK_KIND: Final = b"near-dup-import"
_HINT: Final = "lower max_distance"
_BAND_MASK: Final = (1 << BAND_BITS) - 1
_DISTANCE: Final = "bit_count((image_dhash # CAST(:hash AS bigint))::bit(64))"
_BAND_SCAN: Final = f"""SELECT id, created_at, {_DISTANCE} AS distance FROM dataset_rows
     WHERE dataset_id = :dataset_id AND image_dhash IS NOT NULL AND {{band}} = ANY(:band{{n}})
       AND {_DISTANCE} <= :max_distance
       AND (CAST(:after_created AS timestamptz) IS NULL
            OR (created_at, id) > (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))"""
_NEAR = text(
    "SELECT id, distance FROM ("
    + " UNION ".join(_BAND_SCAN.format(band=hash_band(n), n=n) for n in range(HASH_BANDS))
    + """) AS near
     WHERE id <> ALL(:exclude)
     ORDER BY distance, created_at, id
     LIMIT :limit"""
).bindparams(
    *(bindparam(f"band{band}", type_=ARRAY(BIGINT)) for band in range(HASH_BANDS)),
    bindparam("exclude", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("hash", type_=BIGINT),
)


@functools.cache
def _masks(radius: int) -> tuple[int, ...]:
    """Every 16-bit mask with at most `radius` bits set."""
    return tuple(
        sum(1 << bit for bit in bits)
        for count in range(radius + 1)
        for bits in itertools.combinations(range(BAND_BITS), count)
    )


def band_radii(max_distance: int) -> list[int]:
    """How many bits each band is searched within: as even as can be, summing to
    `max_distance` - 3 (see the module documentation)."""
    total = max(0, max_distance - (HASH_BANDS - 1))
    return [total // HASH_BANDS + (band < total % HASH_BANDS) for band in range(HASH_BANDS)]


def probes(dhash: int, max_distance: int) -> list[list[int]]:
    """For each band, the band values to look up for the hashes within `max_distance` of
    `dhash` (see the module documentation)."""
    unsigned = dhash & ((1 << HASH_BITS) - 1)
    return [
        [((unsigned >> (band * BAND_BITS)) & _BAND_MASK) ^ mask for mask in _masks(radius)]
        for band, radius in enumerate(band_radii(max_distance))
    ]


def distance(first: int, second: int) -> int:
    """The Hamming distance between two stored hashes."""
    return ((first ^ second) & ((1 << HASH_BITS) - 1)).bit_count()


@dataclass(frozen=True)
class Near:
    """A row near a hash, and how many bits apart they are."""

    row_id: uuid.UUID
    distance: int


_BAND_SCANS_ONLY = text("""SELECT set_config('enable_seqscan', :on, true),
                                  set_config('enable_bitmapscan', :on, true)""")


@asynccontextmanager
async def band_scans_only(session: AsyncSession) -> AsyncIterator[None]:
    """Plan the searches of the block as index-only scans of the band indexes.

    The planner cannot tell how few rows a band holds of a long list of values, and would read
    the whole table instead (measured at 1,000,000 rows: 80-100 ms against 2-45 ms for the
    index-only scans). The settings are local to the transaction, so a failed search, which
    rolls it back, leaves none behind.
    """
    await session.exec(_BAND_SCANS_ONLY.bindparams(on="off"))  # type: ignore[call-overload]
    yield
    await session.exec(_BAND_SCANS_ONLY.bindparams(on="on"))  # type: ignore[call-overload]


async def near_rows(
    session: AsyncSession,
    *,
    dataset_id: uuid.UUID,
    dhash: int,
    max_distance: int,
    limit: int,
    exclude: Sequence[uuid.UUID] = (),
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Near]:
    """The dataset's rows whose hash is within `max_distance` of `dhash`, nearest first (then
    oldest first), at most `limit`; `exclude` rows are left out, and with `after` only rows
    created after that (created_at, id) are considered.

    The caller checks that the dataset is in the caller's team, and runs the search within
    `band_scans_only`.
    """
    bands = probes(dhash, max_distance)
    found = await session.exec(  # type: ignore[call-overload]
        _NEAR.bindparams(
            dataset_id=dataset_id,
            hash=dhash,
            max_distance=max_distance,
            limit=limit,
            exclude=list(exclude),
            after_created=None if after is None else after[0],
            after_id=None if after is None else after[1],
            **{f"band{band}": values for band, values in enumerate(bands)},
        )
    )
    return [Near(row_id=row.id, distance=row.distance) for row in found.all()]


async def near_copies(
    session: AsyncSession, *, dataset_id: uuid.UUID, dhashes: Sequence[int], max_distance: int
) -> list[bool]:
    """For each hash in order, whether it is within `max_distance` bits of a stored row's hash
    in the dataset or of an earlier hash of `dhashes` that is not itself a near copy.

    The dataset's near-copy lock is then held until the transaction ends, so imports that skip
    near copies check and insert one after the other, and two cannot both add copies of one
    image.
    """
    await hold_until_commit(session, slot_key(_LOCK_KIND, dataset_id, 0))
    kept: list[int] = []
    copies = []
    async with band_scans_only(session):
        for dhash in dhashes:
            copy = any(distance(dhash, other) <= max_distance for other in kept) or bool(
                await near_rows(
                    session,
                    dataset_id=dataset_id,
                    dhash=dhash,
                    max_distance=max_distance,
                    limit=1,
                )
            )
            copies.append(copy)
            if not copy:
                kept.append(dhash)
    return copies


async def rows_by_id(
    session: AsyncSession, *, dataset_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, DatasetRow]:
    """The dataset's rows of `ids`, with their authors, by id."""
    if not ids:
        return {}
    query = (
        select(DatasetRow)
        .options(*WITH_AUTHORS)
        .where(DatasetRow.dataset_id == dataset_id, col(DatasetRow.id).in_(ids))
    )
    return {row.id: row for row in (await session.exec(query)).unique().all()}


async def similar(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    max_distance: int,
    limit: int,
    timeout: float,
) -> list[tuple[int, DatasetRow]]:
    """The rows of the dataset whose image is within `max_distance` bits of this row's, nearest
    first, at most `limit`, each with its distance; the search may run `timeout` seconds.

    Raises:
        ValidationException: when the search ran longer than `timeout`.
        NotFoundException: when the row is not in this dataset of the caller's team.
        ConflictException: when the row's image has no hash yet (stored before hashes were
            recorded, and not backfilled).
    """
    row = await get_row(session, team_id=team_id, dataset_id=dataset_id, row_id=row_id)
    if row.image_dhash is None:
        raise ConflictException(
            "The row's image has no perceptual hash yet; start an image backfill of the dataset"
        )
    async with searching(session, timeout, hint=_HINT), band_scans_only(session):
        near = await near_rows(
            session,
            dataset_id=dataset_id,
            dhash=row.image_dhash,
            max_distance=max_distance,
            limit=limit,
            exclude=[row.id],
        )
    rows = await rows_by_id(session, dataset_id=dataset_id, ids=[item.row_id for item in near])
    return [(item.distance, rows[item.row_id]) for item in near if item.row_id in rows]


@dataclass(frozen=True)
class Group:
    """A row and the rows created after it whose images are near it, nearest first."""

    row: DatasetRow
    near: list[tuple[int, DatasetRow]]


@dataclass(frozen=True)
class GroupPage:
    """Groups found, the cursor to go on from (None at the end), and rows looked at."""

    groups: list[Group]
    next_cursor: str | None
    scanned: int


def _fingerprint(dataset_id: uuid.UUID, max_distance: int) -> str:
    """What a near-duplicates cursor is bound to: the dataset and the distance."""
    described = json.dumps(["near-duplicates", str(dataset_id), max_distance])
    return hashlib.sha256(described.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Anchor:
    id: uuid.UUID
    created_at: datetime
    image_dhash: int


async def groups(
    session: AsyncSession,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    max_distance: int,
    page_size: int,
    cursor: str | None,
    timeout: float,
) -> GroupPage:
    """The next groups of near-duplicate images of the dataset, in the order rows were created.

    Rows are taken in creation order, starting after `cursor`; each row with a hash is looked
    up against the rows created after it (at most `MAX_GROUP` of them). A row with any forms a
    group. So every pair of near-duplicates appears exactly once, in the group of its older
    row, and an image near several others shows them all. A page stops after `page_size`
    groups, or after `SCAN_SECONDS` of looking, or at the end of the dataset; `next_cursor` is
    None only at the end, and a page may hold fewer groups (even none) when it ran out of time.

    Each search may run `timeout` seconds.

    Raises:
        NotFoundException: when the dataset is not in the caller's team.
        ValidationException: for a cursor not given by this listing with this `max_distance`,
            or a search that ran longer than `timeout`.
    """
    await dataset_service.get_dataset(session, team_id=team_id, dataset_id=dataset_id)
    query = _fingerprint(dataset_id, max_distance)
    after = None if cursor is None else RowCursor.decode(cursor, query=query)
    position = None if after is None else (after.after, after.row_id)
    found: list[tuple[uuid.UUID, list[Near]]] = []
    scanned = 0
    deadline = time.monotonic() + SCAN_SECONDS
    async with searching(session, timeout, hint=_HINT), band_scans_only(session):
        while len(found) < page_size and time.monotonic() < deadline:
            anchors = await _anchors(session, dataset_id=dataset_id, after=position)
            if not anchors:
                position = None
                break
            for anchor in anchors:
                position = (anchor.created_at, anchor.id)
                scanned += 1
                near = await near_rows(
                    session,
                    dataset_id=dataset_id,
                    dhash=anchor.image_dhash,
                    max_distance=max_distance,
                    limit=MAX_GROUP,
                    after=position,
                )
                if near:
                    found.append((anchor.id, near))
                if len(found) >= page_size or time.monotonic() >= deadline:
                    break
    rows = await rows_by_id(
        session,
        dataset_id=dataset_id,
        ids=[row_id for row_id, _ in found] + [item.row_id for _, near in found for item in near],
    )
    page = [
        Group(
            row=rows[anchor],
            near=[(item.distance, rows[item.row_id]) for item in near if item.row_id in rows],
        )
        for anchor, near in found
        if anchor in rows
    ]
    next_cursor = None if position is None else RowCursor(query, *position).encode()
    return GroupPage(groups=page, next_cursor=next_cursor, scanned=scanned)


async def _anchors(
    session: AsyncSession, *, dataset_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None
) -> list[_Anchor]:
    """The next rows with a hash, in creation order."""
    query = (
        select(DatasetRow.id, DatasetRow.created_at, DatasetRow.image_dhash)
        .where(DatasetRow.dataset_id == dataset_id, col(DatasetRow.image_dhash).is_not(None))
        .order_by(col(DatasetRow.created_at), col(DatasetRow.id))
        .limit(_ANCHOR_BATCH)
    )
    if after is not None:
        query = query.where(tuple_(col(DatasetRow.created_at), col(DatasetRow.id)) > tuple_(*after))
    return [_Anchor(*found) for found in (await session.exec(query)).all()]
