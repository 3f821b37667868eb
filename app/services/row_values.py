"""Row values: validation against the schema's fields, defaults, and the computed status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.common.exceptions import ErrorDetail, ValidationException
from app.domain.field_types import FieldRule, FieldValueError, check_value, is_unset, parse_text
from app.models.row import RowStatus

PENDING: RowStatus = "pending"
REVIEWED: RowStatus = "reviewed"


def value_error(rule: FieldRule, message: str, *, prefix: str = "body.data") -> ValidationException:
    """The 400 for one field's value, naming the field by name and id."""
    location = f"{prefix}.{rule.id}"
    return ValidationException(
        f"Field '{rule.name}' ({location}): {message}",
        details=[ErrorDetail(field=location, message=message)],
    )


def validate_data(
    rules: Sequence[FieldRule], data: Mapping[str, Any] | None, *, apply_defaults: bool
) -> dict[str, Any]:
    """Check a row's `data` (field id → value) and return what is stored.

    Unset values (`null`, `""`) are dropped. With `apply_defaults` (a new row), a field left
    out or unset that has a `default_value` gets it.

    Raises:
        ValidationException: for a key that is not a field of the schema, or an invalid value.
    """
    by_id = {rule.id: rule for rule in rules}
    data = data or {}
    for key in data:
        if key not in by_id:
            raise ValidationException.for_field(
                f"body.data.{key}"[:200], "not a field of this dataset's schema"
            )
    stored: dict[str, Any] = {}
    for rule in rules:
        value = data.get(rule.id)
        try:
            if not is_unset(value):
                stored[rule.id] = check_value(rule, value)
            elif apply_defaults and rule.default_value is not None:
                stored[rule.id] = parse_text(rule, rule.default_value)
        except FieldValueError as error:
            raise value_error(rule, str(error)) from None
    return stored


def computed_status(rules: Sequence[FieldRule], stored: Mapping[str, Any]) -> RowStatus:
    """`reviewed` when every required field holds a value, else `pending`."""
    complete = all(not is_unset(stored.get(rule.id)) for rule in rules if rule.required)
    return REVIEWED if complete else PENDING
