"""The base class of every design model, and errors of rules that span several fields."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# The context key of a `field_error` that names the field to change.
FIELD_CONTEXT_KEY = "field"

# Numbers in lists and tuples. Pydantic's lax mode reads true and false as 1 and 0, and
# these accept numbers only; floats also accept integers.
StrictInteger = Annotated[int, Field(strict=True)]
StrictNumber = Annotated[float, Field(strict=True)]


def sentence_case_title(name: str, _info: object) -> str:
    """Return the schema title of field `name`: "batch_size" becomes "Batch size"."""
    return name.replace("_", " ").capitalize()


class Strict(BaseModel):
    """A design part that rejects unknown fields and non-finite numbers."""

    # NaN and infinity would slip past range checks and break JSON responses. The
    # designer labels fields with their titles; fields with acronyms set their own.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, field_title_generator=sentence_case_title
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_booleans_as_numbers(cls, data: Any) -> Any:
        """Reject true and false for a number field, which lax mode would read as 1 and 0."""
        if not isinstance(data, Mapping):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if isinstance(value, bool) and field is not None:
                number = _number_type(field.annotation)
                if number is not None:
                    noun = "an integer" if number is int else "a number"
                    raise PydanticCustomError(
                        f"{number.__name__}_type",
                        f"Input should be {noun}, not true or false",
                        {FIELD_CONTEXT_KEY: name, "value": value},
                    )
        return data


def _number_type(annotation: Any) -> type | None:
    """Return int or float for a field annotated with it, optionally with None, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        annotation = members[0] if len(members) == 1 else None
    return annotation if annotation in (int, float) else None


def field_error(field: str, value: Any, message: str) -> PydanticCustomError:
    """Return the error of a rule over several fields, naming the field to change and its value.

    A model validator raises it. Pydantic reports the error at the model's location with
    the whole model as its input, so `error_location` moves it to `field` and `value`.
    `field` is a dotted path below the model, such as "radius_range" or "pin.values".
    """
    return PydanticCustomError("value_error", message, {FIELD_CONTEXT_KEY: field, "value": value})


def error_location(error: Mapping[str, Any]) -> tuple[tuple[int | str, ...], Any]:
    """Return the location and the rejected value of one error of `ValidationError.errors()`.

    For an error made by `field_error`, these are the field it names, below the model's
    location, and that field's value. For any other error, they are pydantic's `loc` and
    `input`.
    """
    loc = tuple(error.get("loc", ()))
    context = error.get("ctx") or {}
    field = context.get(FIELD_CONTEXT_KEY)
    if not isinstance(field, str):
        return loc, error.get("input")
    return (*loc, *field.split(".")), context.get("value")
