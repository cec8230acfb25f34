"""The words that 422 messages use for what a field allows, from its JSON schema."""

from __future__ import annotations

import pytest

from backend.allowed_values import allowed_text

# (schema, nullable, text)
CASES = [
    ({"type": "integer", "minimum": 1, "maximum": 16}, False, "an integer from 1 to 16"),
    (
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        False,
        "a number at least 0 and below 1",
    ),
    ({"type": "number", "exclusiveMinimum": 0.0}, False, "a number above 0"),
    ({"type": "number", "maximum": 2.5}, False, "a number at most 2.5"),
    ({"type": "integer"}, True, "an integer, or null"),
    (
        {"type": "string", "minLength": 1, "maxLength": 200},
        False,
        "a string of 1 to 200 characters",
    ),
    ({"type": "array", "maxItems": 1}, False, "a list of at most 1 item"),
    ({"type": "array", "minItems": 0}, False, "a list"),
    ({"type": "boolean"}, False, "true or false"),
    ({"enum": ["cpu", "gpu"], "type": "string"}, False, "'cpu' or 'gpu'"),
    ({"enum": [32, 64], "type": "integer"}, False, "32 or 64"),
]


@pytest.mark.parametrize(("schema", "nullable", "text"), CASES)
def test_allowed_text_of_schema(schema, nullable, text):
    assert allowed_text(schema, nullable) == text


def test_allowed_text_of_untyped_union():
    schema = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert allowed_text(schema, False) is None


def test_allowed_text_of_file():
    assert allowed_text({"type": "string", "format": "binary"}, False) == "a file"
