"""Row thumbnails: served from PostgreSQL, made on the first request for a size.

The first request for a row's thumbnail of a size downloads the image again (through the safe
fetcher), checks that it is still the image the row holds (same MD5), makes the thumbnail off
the event loop and keeps it in `row_thumbnails`; every later request, on any host, reads it
back in one indexed query and downloads nothing. A thumbnail made from an older image of the
row (its image was changed since) is made again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import (
    ConflictException,
    NotFoundException,
    RateLimitedException,
    ValidationException,
)
from app.domain.images import ImageError
from app.domain.thumbnails import MEDIA_TYPE, make_thumbnail
from app.models.base import utcnow
from app.services.image_fetch import ImageFetcher

_CACHED = text("""SELECT r.image_url, r.image_hash, t.image_hash AS made_from, t.content
      FROM dataset_rows r
      JOIN datasets d ON d.id = r.dataset_id
      LEFT JOIN row_thumbnails t ON t.row_id = r.id AND t.size = :size
     WHERE r.id = :row_id AND r.dataset_id = :dataset_id AND d.team_id = :team_id""")
_KEEP = text("""INSERT INTO row_thumbnails (row_id, size, image_hash, content, created_at)
    VALUES (:row_id, :size, :image_hash, :content, :now)
    ON CONFLICT (row_id, size) DO UPDATE
       SET image_hash = EXCLUDED.image_hash, content = EXCLUDED.content,
           created_at = EXCLUDED.created_at""")


MAX_MAKING = 2
"""Thumbnails one process makes at once: each downloads an image (up to `IMAGE_MAX_BYTES`) and
decodes it (up to 64 million pixels), so a member asking for many new ones at once gets 429
rather than starving the process of CPU and memory. Kept thumbnails are never limited."""


class _Making:
    """Counts the thumbnails being made in this process (one event loop, so no lock)."""

    count = 0

    def __enter__(self) -> None:
        if _Making.count >= MAX_MAKING:
            raise RateLimitedException(
                "Too many thumbnails are being made; retry in a moment",
                headers={"Retry-After": "1"},
            )
        _Making.count += 1

    def __exit__(self, *exc: object) -> None:
        _Making.count -= 1


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail's bytes, media type and entity tag (the image's MD5 and the size)."""

    content: bytes
    media_type: str
    etag: str


def entity_tag(image_hash: str, size: int) -> str:
    """The ETag of a row's thumbnail of `size`: it changes only when the image does."""
    return f'"{image_hash}-{size}"'


async def thumbnail(
    session: AsyncSession,
    fetcher: ImageFetcher,
    *,
    team_id: uuid.UUID,
    dataset_id: uuid.UUID,
    row_id: uuid.UUID,
    size: int,
) -> Thumbnail:
    """The row's thumbnail of `size`, made and kept on the first request.

    Raises:
        NotFoundException: when the row is not in this dataset of the caller's team.
        ValidationException: when the image cannot be downloaded or decoded any more.
        ConflictException: when the URL now serves another image than the row's.
        RateLimitedException: when this process already makes `MAX_MAKING` thumbnails.
    """
    found = (
        await session.exec(  # type: ignore[call-overload]
            _CACHED.bindparams(row_id=row_id, dataset_id=dataset_id, team_id=team_id, size=size)
        )
    ).first()
    if found is None:
        raise NotFoundException("Row not found")
    tag = entity_tag(found.image_hash, size)
    if found.content is not None and found.made_from == found.image_hash:
        return Thumbnail(found.content, MEDIA_TYPE, tag)
    await session.commit()
    with _Making():
        image, data = await fetcher.download(found.image_url)
        if image.md5 != found.image_hash:
            raise ConflictException("The image at the row's URL has changed since it was stored")
        try:
            content = await asyncio.to_thread(
                make_thumbnail, data, size, max_pixels=fetcher.max_pixels
            )
        except ImageError as error:
            raise ValidationException.for_field("image_url", str(error)) from None
    try:
        await session.exec(  # type: ignore[call-overload]
            _KEEP.bindparams(
                row_id=row_id, size=size, image_hash=image.md5, content=content, now=utcnow()
            )
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise NotFoundException("Row not found") from None
    return Thumbnail(content, MEDIA_TYPE, tag)
