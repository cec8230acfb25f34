"""The base class of every design model, and errors of rules that span several fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
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
