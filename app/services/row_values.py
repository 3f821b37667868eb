"""Row values: validation against the schema's fields, defaults, and the computed status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from app.common.exceptions import ErrorDetail, ValidationException
from app.domain.field_keys import FieldKeyError, resolve_keys, shown_key
from app.domain.field_types import FieldRule, FieldValueError, check_value, is_unset, parse_text
from app.models.row import RowStatus

PENDING: RowStatus = "pending"
REVIEWED: RowStatus = "reviewed"

V = TypeVar("V")


def value_error(rule: FieldRule, message: str, *, prefix: str = "body.data") -> ValidationException:
    """The 400 for one field's value, naming the field by name and id."""
    location = f"{prefix}.{rule.id}"
    return ValidationException(
        f"Field '{rule.name}' ({location}): {message}",
        details=[ErrorDetail(field=location, message=message)],
    )


def by_field_id(
    rules: Sequence[FieldRule], values: Mapping[str, V], *, location: str = "body.data"
) -> dict[str, V]:
    """`values`, keyed by field ids or names (see `app.domain.field_keys`), keyed by field id.

    Serves a row's `data` and an import's `column_mapping` alike.

    Args:
        location: Where `values` sits in the request (`body.data`, `column_mapping`), for the
            error's field.

    Raises:
        ValidationException: for a key that names no field of the schema (the message lists
            the fields), or a field given twice.
    """
    try:
        return resolve_keys(rules, values)
    except FieldKeyError as error:
        raise ValidationException.for_field(
            f"{location}.{shown_key(error.key)}"[:200], str(error)
        ) from None


def validate_data(
    rules: Sequence[FieldRule],
    data: Mapping[str, Any] | None,
    *,
    apply_defaults: bool,
    location: str = "body.data",
) -> dict[str, Any]:
    """Check a row's `data` (field id or name → value) and return what is stored (by field id).

    Unset values (`null`, `""`) are dropped. With `apply_defaults` (a new row), a field left
    out or unset that has a `default_value` gets it.

    Args:
        location: Where `data` sits in the request, for the error's field.

    Raises:
        ValidationException: for a key that is not a field of the schema, a field given twice,
            or an invalid value.
    """
    values = by_field_id(rules, data or {}, location=location)
    stored: dict[str, Any] = {}
    for rule in rules:
        value = values.get(rule.id)
        try:
            if not is_unset(value):
                stored[rule.id] = check_value(rule, value)
            elif apply_defaults and rule.default_value is not None:
                stored[rule.id] = parse_text(rule, rule.default_value)
        except FieldValueError as error:
            raise value_error(rule, str(error), prefix=location) from None
    return stored


def computed_status(rules: Sequence[FieldRule], stored: Mapping[str, Any]) -> RowStatus:
    """`reviewed` when every required field holds a value, else `pending`."""
    complete = all(not is_unset(stored.get(rule.id)) for rule in rules if rule.required)
    return REVIEWED if complete else PENDING
