"""The documented shape of a field's `config`, shown in OpenAPI and so in docs and SDKs.

The request side keeps its tolerant parsing (`app.domain.field_types.normalize_config` reads
the free-form object web clients send); only its schema names `FieldConfig`. The response side
is validated as `FieldConfig`, which the stored (normalised) config always satisfies.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, with_config
from typing_extensions import TypedDict

from app.common.validation import JsonObject
from app.domain.field_types import (
    MAX_ENUM_OPTION_LENGTH,
    MAX_ENUM_OPTIONS,
    TEXT_DEFAULT_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
)

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
"""A JSON number, kept as given: whole numbers stay integers in responses."""

EnumOption = Annotated[str, Field(min_length=1, max_length=MAX_ENUM_OPTION_LENGTH)]


@with_config(ConfigDict(extra="forbid"))
class FieldConfig(TypedDict, total=False):
    """A field's type-specific settings; each key belongs to one field type.

    - `boolean`: no keys.
    - `text`: `max_length`, `multiline`.
    - `numeric`: `decimal`, `min`, `max` (`min` ≤ `max`).
    - `enum`: `options` (required).

    A response holds only the keys of the field's own type that are set. On input, keys of
    another type are accepted and dropped (a web form keeps an enum's options when the type is
    switched), `null` or `""` for an optional key means "not set", booleans may be the strings
    `"true"`/`"false"` and numbers may be numeric strings; a key that no type knows is refused.
    """

    max_length: Annotated[
        int,
        Field(
            ge=1,
            le=TEXT_MAX_LENGTH_LIMIT,
            description=(
                "`text` only: the longest value, in characters "
                f"(default {TEXT_DEFAULT_MAX_LENGTH} when not set)."
            ),
        ),
    ]
    multiline: Annotated[
        bool, Field(description="`text` only: whether clients should offer a multi-line input.")
    ]
    decimal: Annotated[
        bool,
        Field(
            description=(
                "`numeric` only: whether fractional values are allowed (default true); "
                "when false, values must be whole numbers."
            )
        ),
    ]
    min: Annotated[Number, Field(description="`numeric` only: the smallest allowed value.")]
    max: Annotated[Number, Field(description="`numeric` only: the largest allowed value.")]
    options: Annotated[
        list[EnumOption],
        Field(
            min_length=1,
            max_length=MAX_ENUM_OPTIONS,
            json_schema_extra={"uniqueItems": True},
            description=(
                f"`enum` only, and required for it: 1..{MAX_ENUM_OPTIONS} distinct non-empty "
                "strings, the allowed values (blank entries are dropped on input)."
            ),
        ),
    ]


def _as_given(value: Any) -> Any:
    """Hand the value on untouched: parsing is `JsonObject`'s and the normaliser's job."""
    return value


FieldConfigInput = Annotated[
    JsonObject, BeforeValidator(_as_given, json_schema_input_type=FieldConfig)
]
"""A field's `config` in a request: parsed as a free-form object (the service normalises it),
documented as `FieldConfig`."""
