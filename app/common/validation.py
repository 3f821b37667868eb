"""Annotated input types shared by request models."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


def _normalize_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise ValueError("Invalid email format")
    return value


def _require_unicode(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no unpaired surrogate escapes)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _require_unicode(key)
            _require_unicode(item)
    elif isinstance(value, list):
        for item in value:
            _require_unicode(item)


def _valid_unicode(value: dict[str, Any]) -> dict[str, Any]:
    _require_unicode(value)
    return value


def _reject_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Email = Annotated[
    str,
    Field(max_length=254, examples=["ada@example.com"]),
    AfterValidator(_normalize_email),
]
"""An email address, stored lower-cased."""

LoginEmail = Annotated[
    str, Field(min_length=1, max_length=254), AfterValidator(_reject_nul), AfterValidator(str.lower)
]
"""An email as typed at login: not format-checked, so a typo is a plain 401."""

Password = Annotated[
    str,
    Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH),
    AfterValidator(_reject_nul),
]
"""A new password: 8..128 characters."""

AnyPassword = Annotated[
    str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH), AfterValidator(_reject_nul)
]
"""A password being checked against a stored hash."""

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_reject_nul),
]
"""A display name: 1..100 characters after trimming, no NUL."""


def _not_an_id(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError(
        "must not be a UUID: fields are named by id or by name, so it would be ambiguous"
    )


FieldName = Annotated[Name, AfterValidator(_not_an_id)]
"""A field's name: a `Name` that is not a UUID (row data and filters take ids or names)."""

Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(_reject_nul)
]
"""A free-text description of at most 500 characters."""

ImageUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_reject_nul)
]
"""An image URL as given: at most 2048 characters (scheme and address are checked on fetch)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_valid_unicode)]
"""A free-form JSON object. JSON may escape half of a surrogate pair (`"\\ud800"`), which decodes
to text that can neither be stored nor echoed back, so such text anywhere in it is refused."""

ColumnMapping = Annotated[dict[str, str | None], AfterValidator(_valid_unicode)]
"""An import's column mapping (keys and column names), refusing such text the same way."""

SearchText = Annotated[
    str, StringConstraints(min_length=1, max_length=500), AfterValidator(_reject_nul)
]
"""Text searched for (a query parameter): 1..500 characters, no NUL."""
