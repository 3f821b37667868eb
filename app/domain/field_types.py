"""The four field types: normalising their `config` and validating their values.

One module serves schemas (config and `default_value`), rows (JSON values) and CSV import
(cell text), so a value is judged by the same rules wherever it comes from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEXT_DEFAULT_MAX_LENGTH = 10_000
TEXT_MAX_LENGTH_LIMIT = 100_000
MAX_ENUM_OPTIONS = 500
MAX_ENUM_OPTION_LENGTH = 500

TYPE_KEYS: dict[str, frozenset[str]] = {
    "boolean": frozenset(),
    "text": frozenset({"max_length", "multiline"}),
    "numeric": frozenset({"decimal", "min", "max"}),
    "enum": frozenset({"options"}),
}
KNOWN_KEYS = frozenset().union(*TYPE_KEYS.values())

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})


class FieldValueError(ValueError):
    """A config or value that the field's type does not allow; the message says why."""


@dataclass(frozen=True)
class FieldRule:
    """What validating a value of one field needs to know."""

    id: str
    name: str
    type: str
    required: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)
    default_value: str | None = None


def is_unset(value: Any) -> bool:
    """`null` and `""` mean "no value" (web forms send `""` for untouched inputs)."""
    return value is None or value == ""


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FieldValueError(f"config.{key} must be true or false")


def _parse_number(text: str) -> int | float:
    """Convert text that `_NUMBER` matches: whole numbers to int, the others to float.

    An integer with more significant digits than `int()` converts (4300) is far beyond any
    float, so it comes back as infinity, which the finiteness checks then refuse.
    """
    if not re.fullmatch(r"[+-]?\d+", text):
        return float(text)
    sign = "-" if text.startswith("-") else ""
    try:
        return int(sign + (text.lstrip("+-").lstrip("0") or "0"))
    except ValueError:
        return -math.inf if sign else math.inf


def _as_number(value: Any, key: str) -> int | float:
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = _parse_number(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldValueError(f"config.{key} must be a number")
    if not _finite(value):
        raise FieldValueError(f"config.{key} must be a finite number")
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if not _is_blank(config.get("max_length")):
        max_length = _as_number(config["max_length"], "max_length")
        if not float(max_length).is_integer():
            raise FieldValueError("config.max_length must be a whole number")
        if not 1 <= max_length <= TEXT_MAX_LENGTH_LIMIT:
            raise FieldValueError(
                f"config.max_length must be between 1 and {TEXT_MAX_LENGTH_LIMIT}"
            )
        result["max_length"] = int(max_length)
    if not _is_blank(config.get("multiline")):
        result["multiline"] = _as_bool(config["multiline"], "multiline")
    return result


def _numeric_config(config: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if not _is_blank(config.get("decimal")):
        result["decimal"] = _as_bool(config["decimal"], "decimal")
    for key in ("min", "max"):
        if not _is_blank(config.get(key)):
            result[key] = _as_number(config[key], key)
    if "min" in result and "max" in result and result["min"] > result["max"]:
        raise FieldValueError("config.min must not be greater than config.max")
    return result


def _enum_config(config: Mapping[str, Any]) -> dict[str, Any]:
    options = config.get("options")
    if options is None:
        options = []
    if not isinstance(options, list):
        raise FieldValueError("config.options must be a list of strings")
    kept: list[str] = []
    for option in options:
        if option is None or (isinstance(option, str) and not option.strip()):
            continue
        if not isinstance(option, str):
            raise FieldValueError("config.options must be a list of strings")
        if len(option) > MAX_ENUM_OPTION_LENGTH or "\x00" in option:
            raise FieldValueError(
                f"config.options entries must be at most {MAX_ENUM_OPTION_LENGTH} characters"
            )
        kept.append(option)
    if not kept:
        raise FieldValueError("config.options needs at least one non-empty option")
    if len(kept) > MAX_ENUM_OPTIONS:
        raise FieldValueError(f"config.options allows at most {MAX_ENUM_OPTIONS} options")
    if len(set(kept)) != len(kept):
        repeated = next(option for option in kept if kept.count(option) > 1)
        raise FieldValueError(f"config.options repeats '{repeated}'")
    return {"options": kept}


_CONFIG_NORMALIZERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "boolean": lambda config: {},
    "text": _text_config,
    "numeric": _numeric_config,
    "enum": _enum_config,
}


def normalize_config(field_type: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a field's config and keep only its own type's keys.

    Keys of another type are dropped (a web form keeps an enum's options when its type is
    switched to boolean); `null`/`""` optional numbers are unset; blank enum options are dropped.

    Raises:
        FieldValueError: for a key no type knows, or an invalid value of the type's own keys.
    """
    config = config or {}
    unknown = sorted(set(config) - KNOWN_KEYS)
    if unknown:
        raise FieldValueError(f"unknown config key '{unknown[0]}'")
    own = {key: value for key, value in config.items() if key in TYPE_KEYS[field_type]}
    return _CONFIG_NORMALIZERS[field_type](own)


def _check_boolean(rule: FieldRule, value: Any) -> Any:
    if not isinstance(value, bool):
        raise FieldValueError("must be true or false")
    return value


def _check_text(rule: FieldRule, value: Any) -> Any:
    if not isinstance(value, str):
        raise FieldValueError("must be a string")
    if "\x00" in value:
        raise FieldValueError("must not contain NUL characters")
    limit = rule.config.get("max_length", TEXT_DEFAULT_MAX_LENGTH)
    if len(value) > limit:
        raise FieldValueError(f"must be at most {limit} characters")
    return value


def _check_numeric(rule: FieldRule, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise FieldValueError("must be a finite number")
    if not rule.config.get("decimal", True):
        if not float(value).is_integer():
            raise FieldValueError("must be a whole number")
        value = int(value)
    low, high = rule.config.get("min"), rule.config.get("max")
    if low is not None and value < low:
        raise FieldValueError(f"must be at least {low}")
    if high is not None and value > high:
        raise FieldValueError(f"must be at most {high}")
    return value


def _check_enum(rule: FieldRule, value: Any) -> Any:
    if not isinstance(value, str) or value not in rule.config.get("options", ()):
        raise FieldValueError("must be one of the field's options")
    return value


_VALUE_CHECKS: dict[str, Callable[[FieldRule, Any], Any]] = {
    "boolean": _check_boolean,
    "text": _check_text,
    "numeric": _check_numeric,
    "enum": _check_enum,
}


def check_value(rule: FieldRule, value: Any) -> Any:
    """Validate a JSON value for the field and return it normalised (whole numbers as int).

    Raises:
        FieldValueError: when the value does not fit the field's type and config.
    """
    return _VALUE_CHECKS[rule.type](rule, value)


def parse_text(rule: FieldRule, text: str) -> Any:
    """Convert a value written as text (a CSV cell, a `default_value`) and validate it.

    Booleans accept true/false/yes/no/1/0 in any case; numbers accept decimal notation.

    Raises:
        FieldValueError: when the text is not a valid value of the field.
    """
    value: Any = text
    if rule.type == "boolean":
        word = text.strip().lower()
        if word not in _TRUE_WORDS | _FALSE_WORDS:
            raise FieldValueError("must be true, false, yes, no, 1 or 0")
        value = word in _TRUE_WORDS
    elif rule.type == "numeric":
        stripped = text.strip()
        if not _NUMBER.fullmatch(stripped):
            raise FieldValueError("must be a number")
        value = _parse_number(stripped)
    return check_value(rule, value)
