"""Naming a schema's fields by id or by name, as row `data` and an import's `column_mapping` do.

A key is a field's id, or else its name, matched ignoring case as the uniqueness of field names
is (`lower(name)` per schema). An id wins a clash: a key that is one field's id and another
field's name means the field with that id. A name matches the field spelled exactly so first,
then the one field whose name differs only in case; a key that matches several fields only in
case (possible where the database's `lower()` keeps letters that Python lowers) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from app.domain.field_types import FieldRule

MAX_NAMES_LISTED = 30
"""Field names an unknown-key message lists at most (names are at most 100 characters)."""
MAX_KEY_SHOWN = 100
"""Characters of a client's key repeated in a message."""

V = TypeVar("V")


class FieldKeyError(ValueError):
    """A key that names no field, several, or one already named; the message is safe to show."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def shown_key(key: str) -> str:
    """A client's key as a message may quote it: shortened, and encodable as UTF-8."""
    return key[:MAX_KEY_SHOWN].encode("utf-8", "replace").decode("utf-8")


def known_fields(rules: Sequence[FieldRule]) -> str:
    """The schema's field names for an error message, at most `MAX_NAMES_LISTED` of them."""
    if not rules:
        return "the schema has no fields"
    names = ", ".join(repr(rule.name) for rule in rules[:MAX_NAMES_LISTED])
    more = len(rules) - MAX_NAMES_LISTED
    return f"its fields are {names}" + (f" and {more} more" if more > 0 else "")


class FieldKeys:
    """The fields of one schema, found by id or by name (see the module docstring)."""

    def __init__(self, rules: Sequence[FieldRule]) -> None:
        self.rules = rules
        self.by_id = {rule.id: rule for rule in rules}
        self._by_name: dict[str, FieldRule] | None = None
        self._by_lower: dict[str, list[FieldRule]] | None = None

    def has(self, key: str) -> bool:
        """Whether `key` names exactly one field."""
        try:
            self.find(key)
        except FieldKeyError:
            return False
        return True

    def find(self, key: str) -> FieldRule:
        """The field `key` names.

        Raises:
            FieldKeyError: when no field, or more than one, matches.
        """
        rule = self.by_id.get(key)
        if rule is not None:
            return rule
        if self._by_name is None or self._by_lower is None:
            self._by_name = {rule.name: rule for rule in self.rules}
            self._by_lower = {}
            for item in self.rules:
                self._by_lower.setdefault(item.name.lower(), []).append(item)
        exact = self._by_name.get(key)
        if exact is not None:
            return exact
        matches = self._by_lower.get(key.lower(), [])
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(repr(rule.name) for rule in matches)
            raise FieldKeyError(
                key, f"matches the fields {names} ignoring case; use the exact name or the id"
            )
        raise FieldKeyError(
            key, f"not a field of this dataset's schema; {known_fields(self.rules)}"
        )

    def resolve(self, values: Mapping[str, V]) -> dict[str, V]:
        """`values` keyed by field id instead of by the ids or names given, in the same order.

        Raises:
            FieldKeyError: for a key that names no field, or a field named twice (by id and by
                name, or by two spellings of its name), since it is unclear which value is meant.
        """
        if all(key in self.by_id for key in values):
            return dict(values)
        resolved: dict[str, V] = {}
        given_as: dict[str, str] = {}
        for key, value in values.items():
            rule = self.find(key)
            if rule.id in resolved:
                raise FieldKeyError(
                    key,
                    f"names the field '{rule.name}' again (also given as "
                    f"'{shown_key(given_as[rule.id])}'); give each field once",
                )
            resolved[rule.id], given_as[rule.id] = value, key
        return resolved


def resolve_keys(rules: Sequence[FieldRule], values: Mapping[str, V]) -> dict[str, V]:
    """`values`, whose keys are field ids or names, keyed by field id.

    Raises:
        FieldKeyError: for an unknown key or a field given twice.
    """
    return FieldKeys(rules).resolve(values)
