"""Filters on field values: the `field:op:value` syntax and its typed meaning.

A filter names a field (by id or by name, as `app.domain.field_keys` finds it), an operator
that the field's type allows, and a value written as text, which is converted by the field's
type. The result is a `FieldCondition` that the row listing turns into SQL.

| type    | operators                    | value                                       |
|---------|------------------------------|---------------------------------------------|
| boolean | `eq`                         | true/false/yes/no/1/0                       |
| numeric | `eq`, `gt`, `gte`, `lt`, `lte` | a decimal number (the field's min/max do not apply) |
| enum    | `eq`, `in`                   | an option; for `in` a JSON array of options |
| text    | `eq`, `contains`             | any text; `contains` ignores case           |
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from app.domain.field_keys import FieldKeyError, FieldKeys, shown_key
from app.domain.field_types import FieldRule, FieldValueError, parse_text

FilterOp = Literal["eq", "in", "gt", "gte", "lt", "lte", "contains"]
OPS_BY_TYPE: dict[str, tuple[FilterOp, ...]] = {
    "boolean": ("eq",),
    "numeric": ("eq", "gt", "gte", "lt", "lte"),
    "enum": ("eq", "in"),
    "text": ("eq", "contains"),
}
MAX_FILTERS = 20
MAX_IN_VALUES = 100

_OPERATOR = re.compile(r":(eq|in|gte|gt|lte|lt|contains):")
"""An operator between colons; the field key is before it, the value after (colons too)."""


class FilterError(ValueError):
    """A filter that cannot be applied; the message says why and is safe to show."""


@dataclass(frozen=True)
class FieldFilter:
    """A filter as written: the field key (id or name), the operator and the value text.

    `readings` holds every way to split the text at an `:op:` (a field name may itself contain
    `:gt:`); `key`, `op` and `value` are the first, the one used when no field is named so.
    """

    key: str
    op: FilterOp
    value: str
    readings: tuple[tuple[str, FilterOp, str], ...] = ()

    @classmethod
    def parse(cls, written: str) -> FieldFilter:
        """Split `field:op:value`.

        Raises:
            FilterError: when the text has no known `:op:` after a field key.
        """
        if "\x00" in written:
            raise FilterError("must not contain NUL characters")
        readings = tuple(
            (written[: match.start()], match.group(1), written[match.end() :])
            for start in range(1, len(written))
            if (match := _OPERATOR.match(written, start)) is not None
        )
        if not readings:
            raise FilterError(
                "must be field:op:value with op one of eq, in, gt, gte, lt, lte, contains"
            )
        key, op, value = readings[0]
        return cls(key=key, op=op, value=value, readings=readings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FieldCondition:
    """A checked filter: the field's id and type, the operator and the typed value(s)."""

    field_id: str
    field_type: str
    op: FilterOp
    values: tuple[Any, ...]


def _filter_rule(rule: FieldRule) -> FieldRule:
    """The rule a filter value is checked by: a bound of a numeric range need not be a valid
    value itself (min, max, whole numbers), and text is not held to the field's length."""
    if rule.type in ("numeric", "text"):
        return replace(rule, config={})
    return rule


def _in_values(text: str) -> list[str]:
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        values = None
    if not isinstance(values, list) or not values or len(values) > MAX_IN_VALUES:
        raise FilterError(f"'in' takes a JSON array of 1 to {MAX_IN_VALUES} options")
    if not all(isinstance(value, str) for value in values):
        raise FilterError("'in' takes a JSON array of strings")
    return values


def resolve(rules: Sequence[FieldRule], written: FieldFilter) -> FieldCondition:
    """Check a filter against the dataset's fields and convert its value by the field's type.

    Raises:
        FilterError: for an unknown field, an operator the type does not allow, or a value
            that is not one of the type.
    """
    fields = FieldKeys(rules)
    try:
        rule = fields.find(written.key)
    except FieldKeyError as error:
        named = [(key, op, value) for key, op, value in written.readings[1:] if fields.has(key)]
        if not named:
            raise FilterError(f"'{shown_key(written.key)}': {error}") from None
        written = FieldFilter(*named[0])
        rule = fields.find(written.key)
    allowed = OPS_BY_TYPE[rule.type]
    if written.op not in allowed:
        raise FilterError(
            f"field '{rule.name}' ({rule.type}) allows {', '.join(allowed)}, not {written.op}"
        )
    texts = _in_values(written.value) if written.op == "in" else [written.value]
    checking = _filter_rule(rule)
    try:
        values = tuple(parse_text(checking, text) for text in texts)
    except FieldValueError as error:
        raise FilterError(f"field '{rule.name}': the value {error}") from None
    if written.op == "contains" and not written.value:
        raise FilterError(f"field '{rule.name}': 'contains' needs some text")
    return FieldCondition(field_id=rule.id, field_type=rule.type, op=written.op, values=values)
