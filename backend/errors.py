"""Error responses: validation errors name field, value and rule; database outages give 503."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from backend.allowed_values import allowed_text, field_schema
from biaslab.design import DATASET_FAMILIES, MODEL_KINDS
from biaslab.design.base import error_location

logger = logging.getLogger(__name__)

MAX_VALUE_CHARS = 80
# A rejected value is echoed whole up to this size, so a huge body is not sent back.
MAX_ECHOED_CHARS = 1000
DATABASE_RETRY_SECONDS = 5
# Values of fields with these names are never echoed back, not even to their sender.
SECRET_FIELDS = frozenset({"password", "token", "new_password"})
HIDDEN = "(hidden)"


# pydantic puts the tag of a discriminated union into the error location
# ("dataset", "dots", "counts"); users know the field as "dataset.counts".
_UNION_TAGS = frozenset(DATASET_FAMILIES + MODEL_KINDS)
_UNION_FIELDS = frozenset({"body", "dataset", "model"})

# Pydantic errors of a value of the wrong type: "int_parsing", "float_type", "list_type".
# Their own message names only the type, so the response adds the field's range.
_TYPE_ERROR_SUFFIXES = ("_type", "_parsing")
_TYPE_ERRORS = frozenset({"int_from_float"})
# Errors whose rule lists the allowed values. A null there means a required value is missing.
_CHOICE_ERRORS = frozenset({"literal_error", "enum"})
# Errors of a value beyond one bound. Their own message names only that bound, so the
# response states the field's whole range where its schema gives one.
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """Turn ("body", "dataset", "dots", "counts", 0) into "dataset.counts[0]"."""
    path = ""
    previous: int | str | None = None
    for part in loc:
        after_union = previous in _UNION_FIELDS
        previous = part
        if part in ("body", "query", "path", "header"):
            continue
        if after_union and part in _UNION_TAGS:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown_value(value: Any) -> str:
    if value == HIDDEN:
        return HIDDEN
    if isinstance(value, bool):
        # As the request spelled it in JSON, not Python's True and False.
        return "true" if value else "false"
    return _shorten(_printable(repr(_redacted(value))), MAX_VALUE_CHARS)


def _redacted(value: Any) -> Any:
    """Return `value` with the values of secret fields replaced, at any depth."""
    if isinstance(value, dict):
        return {
            key: HIDDEN if key in SECRET_FIELDS else _redacted(item) for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    return value


def _printable(text: str) -> str:
    # Lone surrogates from JSON escapes such as "\ud800" cannot be encoded as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_safe(value: Any) -> Any:
    """Return `value` in a form that JSON can carry: NaN and infinity become their repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {
            _printable(str(key)): HIDDEN if key in SECRET_FIELDS else _json_safe(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _printable(str(value))


def _echoed_input(value: Any) -> Any:
    """Return the rejected value for the response, cut down when it is large."""
    value = _json_safe(value)
    if len(repr(value)) > MAX_ECHOED_CHARS:
        return _shorten(_printable(repr(value)), MAX_ECHOED_CHARS)
    return value


def is_type_error(error_type: str) -> bool:
    return error_type.endswith(_TYPE_ERROR_SUFFIXES) or error_type in _TYPE_ERRORS


def describe_error(error: dict[str, Any], allowed: str | None = None) -> dict[str, Any]:
    """Add `field` and a one-line `message` to one pydantic error.

    An error of a rule over several fields is moved to the field it names, with
    that field's value in place of the whole model's (`biaslab.design.base.field_error`).
    `allowed` describes the values the field takes ("an integer from 1 to 16"); the
    message of a type error or a missing value then states it.
    """
    located, value = error_location(error)
    loc = list(located)
    context = {key: item for key, item in (error.get("ctx") or {}).items() if key != "value"}
    if error.get("type") == "union_tag_invalid":
        # An unknown discriminator ("family": "stars") is reported on the tag field itself.
        loc.append(str(context.get("discriminator", "")).strip("'"))
        value = context.get("tag")
    field = field_path(loc)
    if any(part in SECRET_FIELDS for part in loc):
        value = HIDDEN
    rule = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    error_type = str(error.get("type", ""))
    if error.get("type") == "json_invalid":
        # FastAPI puts the character offset of a JSON syntax error in `loc`, after
        # "body", and the decoder's reason in `ctx`.
        offset = next((part for part in loc if isinstance(part, int)), None)
        where = "" if offset is None else f" at character {offset}"
        field = field_path([part for part in loc if not isinstance(part, int)])
        value = None
        message = f"{field}: invalid JSON{where}: {context.get('error', rule)}"
    elif error.get("type") == "missing":
        message = f"{field}: missing, this field is required"
        if allowed is not None:
            message += f", use {allowed}"
    elif value is None and (is_type_error(error_type) or error_type in _CHOICE_ERRORS):
        # The designer sends a blank number box as null, so "None is invalid" would
        # read as a Python value the user never typed.
        required = f"{field}: no value (null), this field is required"
        message = f"{required}, use {allowed}" if allowed else f"{required}: {rule}"
    elif (is_type_error(error_type) or error_type in _RANGE_ERRORS) and allowed is not None:
        message = f"{field}: {_shown_value(value)} is invalid: Input should be {allowed}"
    else:
        message = f"{field}: {_shown_value(value)} is invalid: {rule}"
    return {
        **error,
        "loc": [_json_safe(part) for part in loc],
        "msg": _printable(str(error.get("msg", ""))),
        "input": _echoed_input(value),
        "ctx": _json_safe({key: str(item) for key, item in context.items()}),
        "field": _printable(field),
        "message": _printable(message),
    }


def _allowed_for(request: Request, error: dict[str, Any]) -> str | None:
    """Return what the field of a type error or missing value allows, where the schema states it."""
    error_type = str(error.get("type", ""))
    needs_rule = error_type in _RANGE_ERRORS or error_type == "missing" or is_type_error(error_type)
    if not needs_rule and not (error_type in _CHOICE_ERRORS and error.get("input") is None):
        return None
    found = field_schema(request, list(error_location(error)[0]))
    if found is None:
        return None
    schema, nullable = found
    whole = schema.get("type") in ("object", None) or schema.get("format") == "binary"
    if error_type == "missing" and whole:
        # For a missing section or file, "use an object" or "use a file" would add nothing.
        return None
    return allowed_text(schema, nullable)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [describe_error(error, _allowed_for(request, error)) for error in exc.errors()]
    return JSONResponse(status_code=422, content=jsonable_encoder({"detail": details}))


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """Return 503 with a retry hint when the database is unreachable, 500 otherwise."""
    unreachable = isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if not unreachable:
        logger.exception("database error during %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal database error"})
    logger.error("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; retry in a few seconds"},
        headers={"Retry-After": str(DATABASE_RETRY_SECONDS)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_error)
