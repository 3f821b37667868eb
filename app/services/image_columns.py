"""Fetched images as the array parameters of one statement that writes many rows.

The batch statements (`import_service` inserting a batch of rows, `image_backfill` updating
one) take each image column as an array, unnested in step with the others. `IMAGE_ARRAYS` names
those parameters (the SQL's `:hashes`, `:widths`, `:heights`, `:formats`, `:sizes`,
`:dhashes`) and the column each one fills; `image_arrays` builds them from fetched images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, INTEGER, TEXT
from sqlalchemy.types import TypeEngine

from app.services.image_fetch import FetchedImage

IMAGE_ARRAYS: Final[dict[str, tuple[str, TypeEngine[Any]]]] = {
    "hashes": ("image_hash", TEXT()),
    "widths": ("image_width", INTEGER()),
    "heights": ("image_height", INTEGER()),
    "formats": ("image_format", TEXT()),
    "sizes": ("image_bytes", BIGINT()),
    "dhashes": ("image_dhash", BIGINT()),
}
"""Array parameter → (row column, element type)."""


def image_array_params() -> list[BindParameter[Any]]:
    """The typed bind parameters of `IMAGE_ARRAYS`, for `text(...).bindparams`."""
    return [bindparam(name, type_=ARRAY(kind)) for name, (_, kind) in IMAGE_ARRAYS.items()]


def image_arrays(images: Sequence[FetchedImage]) -> dict[str, list[Any]]:
    """The values of `IMAGE_ARRAYS` for `images`, in their order."""
    columns = [image.columns() for image in images]
    return {
        name: [values[column] for values in columns] for name, (column, _) in IMAGE_ARRAYS.items()
    }
