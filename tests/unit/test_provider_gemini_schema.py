"""JSON Schema -> Gemini ``Schema``: what translates, and what is rejected with a 400 naming it."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import types

from common.errors import InvalidRequestError
from workers.providers._gemini_schema import gemini_schema

PARAM = "tools[0].function.parameters"


def convert(schema: dict[str, Any]) -> dict[str, Any]:
    out = gemini_schema(schema, param=PARAM)
    types.Schema.model_validate(out)  # the SDK's type forbids fields Gemini does not know
    return out


def test_pydantic_style_optional_refs_and_enums() -> None:
    schema = {
        "$defs": {
            "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
            "Point": {
                "type": "object",
                "properties": {"x": {"type": "number", "format": "double"}, "y": {"type": "integer", "minimum": 0}},
                "required": ["x", "y"],
            },
        },
        "type": "object",
        "properties": {
            "color": {"$ref": "#/$defs/Color"},
            "where": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}], "default": None, "description": "Spot"},
            "when": {"type": "string", "format": "date-time"},
        },
        "required": ["color"],
        "title": "Shape",
    }
    assert convert(schema) == {
        "type": "OBJECT",
        "title": "Shape",
        "properties": {
            "color": {"type": "STRING", "title": "Color", "enum": ["red", "green"]},
            "where": {
                "type": "OBJECT",
                "nullable": True,
                "default": None,
                "description": "Spot",
                "properties": {"x": {"type": "NUMBER", "format": "double"}, "y": {"type": "INTEGER", "minimum": 0}},
                "required": ["x", "y"],
                "propertyOrdering": ["x", "y"],
            },
            "when": {"type": "STRING", "format": "date-time"},
        },
        "required": ["color"],
        "propertyOrdering": ["color", "where", "when"],
    }


def test_unions_of_several_schemas_become_any_of() -> None:
    schema = {
        "oneOf": [{"type": "string"}, {"type": "object", "properties": {"n": {"type": "integer"}}}, {"type": "null"}]
    }
    assert convert(schema) == {
        "anyOf": [{"type": "STRING"}, {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}],
        "nullable": True,
    }


def test_single_all_of_merges_and_annotations_are_left_out() -> None:
    schema = {"allOf": [{"type": "string"}], "description": "x", "$comment": "internal", "examples": ["a"]}
    assert convert(schema) == {"type": "STRING", "description": "x"}


@pytest.mark.parametrize(
    ("schema", "keyword", "where"),
    [
        (
            {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
            "uniqueItems",
            "#/properties/tags",
        ),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties", None),
        ({"type": "object", "additionalProperties": True}, "additionalProperties", None),
        ({"type": "integer", "enum": [1, 2]}, "enum", None),
        ({"type": "number", "const": 3}, "const", None),
        ({"type": ["string", "integer"]}, "type", None),
        ({"description": "anything"}, "type", None),
        ({"type": "array", "items": [{"type": "string"}]}, "items", None),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "allOf", None),
        ({"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum", None),
        ({"not": {"type": "string"}}, "not", None),
        ({"$ref": "https://example.com/schema.json"}, "$ref", None),
    ],
)
def test_what_gemini_cannot_express_is_rejected_naming_keyword_and_place(
    schema: dict[str, Any], keyword: str, where: str | None
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        gemini_schema(schema, param=PARAM)
    assert caught.value.param == PARAM
    assert f"'{keyword}'" in caught.value.message
    if where:
        assert where in caught.value.message


def test_recursive_references_are_rejected() -> None:
    tree = {
        "$defs": {
            "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
        },
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(InvalidRequestError) as caught:
        gemini_schema(tree, param=PARAM)
    assert "recursive" in caught.value.message
