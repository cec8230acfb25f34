"""Descriptions of the values that request fields allow, read from the app's OpenAPI schema.

A pydantic type error ("Input should be a valid integer") does not state the field's range,
so the error handler looks the field up here and writes "an integer from 1 to 1000000".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request

# A chain of `$ref` longer than this is cut off, and no request schema comes near it.
MAX_REF_DEPTH = 32

_TYPE_NOUNS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}

Schema = Mapping[str, Any]


def field_schema(request: Request, loc: Sequence[int | str]) -> tuple[Schema, bool] | None:
    """Return the schema of the field at pydantic location `loc` and whether it takes null.

    `loc` starts with "body", "query", "path", "header" or "cookie", as FastAPI writes it.
    Returns None when the request matched no API route or the schema does not describe
    the location (a body read as a plain dict, a union without a discriminator).
    """
    route = request.scope.get("route")
    app = request.scope.get("app")
    if not isinstance(route, APIRoute) or not isinstance(app, FastAPI) or not loc:
        return None
    document = app.openapi()
    operation = _operation(document, route, request.method)
    if operation is None:
        return None

    where, *rest = loc
    if where == "body":
        content = (operation.get("requestBody") or {}).get("content") or {}
        media = content.get("application/json") or next(iter(content.values()), None)
        schema = (media or {}).get("schema")
    else:
        name = rest.pop(0) if rest else None
        schema = next(
            (
                parameter.get("schema")
                for parameter in operation.get("parameters", [])
                if parameter.get("in") == where and parameter.get("name") == name
            ),
            None,
        )
    if not isinstance(schema, Mapping):
        return None
    return _walk(document, schema, rest)


def allowed_text(schema: Schema, nullable: bool) -> str | None:
    """Describe the values that a field schema allows, such as "an integer from 1 to 16".

    Returns None for a schema with no single type, such as a union of several types.
    """
    if isinstance(schema.get("enum"), list):
        text = _either([_literal(value) for value in schema["enum"]])
    elif "const" in schema:
        text = _literal(schema["const"])
    elif schema.get("discriminator") is not None:
        text = "an object"
    elif schema.get("type") == "string" and schema.get("format") == "binary":
        text = "a file"
    else:
        noun = _TYPE_NOUNS.get(schema.get("type", ""))
        if noun is None:
            return None
        extent = _extent(schema)
        text = f"{noun} {extent}" if extent else noun
    return f"{text}, or null" if nullable else text


def _operation(document: Schema, route: APIRoute, method: str) -> Schema | None:
    item = document.get("paths", {}).get(route.path_format, {})
    operation = item.get(method.lower())
    return operation if isinstance(operation, Mapping) else None


def _resolve(document: Schema, schema: Schema) -> Schema:
    """Follow `$ref` and one-item `allOf`, keeping the keys beside them (title, default)."""
    current = schema
    for _ in range(MAX_REF_DEPTH):
        reference = current.get("$ref")
        all_of = current.get("allOf")
        if isinstance(reference, str) and reference.startswith("#/"):
            target: Any = document
            for key in reference[2:].split("/"):
                target = target.get(key, {}) if isinstance(target, Mapping) else {}
            rest = {key: value for key, value in current.items() if key != "$ref"}
            current = {**target, **rest}
        elif isinstance(all_of, list) and len(all_of) == 1:
            rest = {key: value for key, value in current.items() if key != "allOf"}
            current = {**_resolve(document, all_of[0]), **rest}
        else:
            return current
    return current


def _unwrap_null(document: Schema, schema: Schema) -> tuple[Schema, bool]:
    """Return X and True for `X | None` (anyOf [X, null]), else the schema itself and False."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or schema.get("discriminator") is not None:
        return schema, False
    others = [option for option in options if option.get("type") != "null"]
    if len(others) != 1 or len(others) == len(options):
        return schema, False
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**_resolve(document, others[0]), **outer}, True


def _walk(document: Schema, root: Schema, path: Sequence[int | str]) -> tuple[Schema, bool] | None:
    schema, nullable = _unwrap_null(document, _resolve(document, root))
    for part in path:
        step = _child(document, schema, part)
        if step is None:
            return None
        schema, nullable = _unwrap_null(document, _resolve(document, step))
    return schema, nullable


def _child(document: Schema, schema: Schema, part: int | str) -> Schema | None:
    """Return the schema one location part below `schema`, or None when it has none."""
    discriminator = schema.get("discriminator")
    if isinstance(discriminator, Mapping):
        # Pydantic puts the tag of a discriminated union in the location ("dataset", "dots").
        reference = (discriminator.get("mapping") or {}).get(part)
        return {"$ref": reference} if isinstance(reference, str) else None
    if isinstance(part, int):
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return prefix[part] if 0 <= part < len(prefix) else None
        items = schema.get("items")
        return items if isinstance(items, Mapping) else None
    properties = schema.get("properties") or {}
    child = properties.get(part)
    return child if isinstance(child, Mapping) else None


def _extent(schema: Schema) -> str:
    """Return the range of a number, or the length of a string or a list, as words."""
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _range(schema)
    if kind == "string":
        return _count(schema.get("minLength"), schema.get("maxLength"), "character")
    if kind == "array":
        return _count(schema.get("minItems"), schema.get("maxItems"), "item")
    return ""


def _range(schema: Schema) -> str:
    """Return "from 1 to 16", "at least 0 and below 1", "above 0" or ""."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"from {_number(low)} to {_number(high)}"
    lower = (
        f"at least {_number(low)}"
        if low is not None
        else _bound("above", schema.get("exclusiveMinimum"))
    )
    upper = (
        f"at most {_number(high)}"
        if high is not None
        else _bound("below", schema.get("exclusiveMaximum"))
    )
    return " and ".join(part for part in (lower, upper) if part)


def _bound(word: str, value: Any) -> str:
    return "" if value is None else f"{word} {_number(value)}"


def _count(low: int | None, high: int | None, noun: str) -> str:
    if low is not None and high is not None:
        count = str(low) if low == high else f"{low} to {high}"
        return f"of {count} {noun}{'' if count == '1' else 's'}"
    if low is not None:
        return f"of at least {low} {noun}{'' if low == 1 else 's'}" if low > 0 else ""
    if high is not None:
        return f"of at most {high} {noun}{'' if high == 1 else 's'}"
    return ""


def _number(value: Any) -> str:
    # 1.0 and 1 mean the same bound, and "1" is how pydantic's range errors write it.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _literal(value: Any) -> str:
    # Pydantic's literal errors quote strings as Python does: 'cpu' or 'gpu'.
    return repr(value) if isinstance(value, str) else _number(value)


def _either(options: list[str]) -> str:
    if len(options) <= 1:
        return "".join(options)
    return f"{', '.join(options[:-1])} or {options[-1]}"
