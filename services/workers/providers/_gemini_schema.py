"""OpenAI's JSON Schemas (tool ``parameters``, ``response_format.json_schema.schema``) in the Gemini
API's ``Schema``, "a select subset of an OpenAPI 3.0 schema object".

Where the shapes come from: the Gemini API reference for ``Schema`` (ai.google.dev/api/caching#Schema:
type as an upper-case ``Type`` enum, ``nullable``, string-only ``enum``, ``anyOf``, ``propertyOrdering``;
``format`` limited to ``enum``/``date-time`` for strings, ``float``/``double`` and ``int32``/``int64``
for numbers) and the official google-genai SDK, ``_transformers.process_schema`` (``$defs`` inlined,
``{"type": "null"}`` alternatives turned into ``nullable``, a string ``const`` into a one-value
``enum``) and ``_raise_for_unsupported_mldev_properties`` (no ``additionalProperties`` on the Gemini API).

What cannot be expressed is rejected with a 400 naming the keyword and where it sits, never dropped:
the model would otherwise generate values the client's schema forbids. Annotations that constrain
nothing (``$schema``, ``examples``, ...) and ``additionalProperties: false`` (Gemini generates only the
declared properties anyway) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import InvalidRequestError

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
# Same name and meaning in both: copied as they are.
_COPIED = frozenset(
    {
        "title",
        "description",
        "default",
        "example",
        "required",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "propertyOrdering",
    }
)
# Annotations that do not change what may be generated.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "examples", "deprecated", "readOnly", "writeOnly", "discriminator", "strict"}
)
# Handled below, one by one.
_STRUCTURAL = frozenset(
    {
        "type",
        "properties",
        "items",
        "enum",
        "const",
        "format",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "additionalProperties",
        "nullable",
    }
)
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}


def gemini_schema(schema: Any, *, param: str) -> dict[str, Any]:
    """``schema`` (JSON Schema) as a Gemini ``Schema``; ``param`` names it in errors."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"'{param}' must be a JSON Schema object.", param=param)
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _Converter(defs, param).convert(schema, "#", frozenset())


class _Converter:
    def __init__(self, defs: Mapping[str, Any], param: str) -> None:
        self._defs = defs
        self._param = param

    def _reject(
        self, keyword: str, where: str, why: str = "cannot be expressed in Gemini's schema"
    ) -> InvalidRequestError:
        at = "" if where == "#" else f" (at {where})"
        return InvalidRequestError(f"{self._param}: '{keyword}'{at} {why}.", param=self._param)

    def convert(self, node: Any, where: str, resolving: frozenset[str]) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise InvalidRequestError(f"{self._param}: the schema at {where} must be an object.", param=self._param)
        if "$ref" in node:
            return self._ref(node, where, resolving)
        if "allOf" in node:
            parts = node["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise self._reject("allOf", where, "with more than one schema cannot be expressed in Gemini's schema")
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self.convert({**parts[0], **rest}, where, resolving)
        for keyword in node:
            if keyword not in _COPIED and keyword not in _ANNOTATIONS and keyword not in _STRUCTURAL:
                raise self._reject(keyword, where)
        variants = node.get("anyOf", node.get("oneOf"))
        if variants is not None:
            return self._union(node, variants, where, resolving)
        out: dict[str, Any] = {k: v for k, v in node.items() if k in _COPIED}
        if node.get("nullable") is True:
            out["nullable"] = True
        gemini_type = self._type(node, out, where)
        if gemini_type is not None:
            out["type"] = gemini_type
        self._values(node, out, gemini_type, where)
        if gemini_type == "OBJECT":
            self._object(node, out, where, resolving)
        elif gemini_type == "ARRAY" and "items" in node:
            if not isinstance(node["items"], dict):
                raise self._reject(
                    "items", where, "as a list (tuple validation) cannot be expressed in Gemini's schema"
                )
            out["items"] = self.convert(node["items"], f"{where}/items", resolving)
        return out

    def _ref(self, node: dict[str, Any], where: str, resolving: frozenset[str]) -> dict[str, Any]:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
        if not isinstance(ref, str) or not ref.startswith(("#/$defs/", "#/definitions/")) or name not in self._defs:
            raise self._reject("$ref", where, f"must point into the schema's own $defs (got {ref!r})")
        if name in resolving:  # Gemini's schema has no references, so a recursive one cannot be inlined
            raise self._reject("$ref", where, f"to {ref!r} is recursive, which cannot be expressed in Gemini's schema")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return self.convert({**self._defs[name], **siblings}, where, resolving | {name})

    def _union(self, node: dict[str, Any], variants: Any, where: str, resolving: frozenset[str]) -> dict[str, Any]:
        keyword = "anyOf" if "anyOf" in node else "oneOf"
        if not isinstance(variants, list) or not variants:
            raise self._reject(keyword, where, "must be a non-empty list")
        nulls = [v for v in variants if v == {"type": "null"}]
        others = [v for v in variants if v != {"type": "null"}]
        extra = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        if len(others) == 1:  # Optional[X]: X, nullable
            out = self.convert({**others[0], **extra}, f"{where}/{keyword}/0", resolving)
        else:
            # oneOf's "exactly one" only differs from anyOf's "at least one" for overlapping schemas,
            # which generation cannot produce from disjoint alternatives.
            out = {k: v for k, v in extra.items() if k in _COPIED}
            out["anyOf"] = [self.convert(v, f"{where}/{keyword}/{i}", resolving) for i, v in enumerate(others)]
        if nulls:
            out["nullable"] = True
        return out

    def _type(self, node: dict[str, Any], out: dict[str, Any], where: str) -> str | None:
        declared = node.get("type")
        if isinstance(declared, list):
            names = [t for t in declared if t != "null"]
            if len(names) != len(declared):
                out["nullable"] = True
            if len(names) != 1:
                raise self._reject(
                    "type", where, f"{declared!r} (several types) cannot be expressed in Gemini's schema"
                )
            declared = names[0]
        if declared is None:  # implied by the keywords present
            if "properties" in node:
                return "OBJECT"
            if "items" in node:
                return "ARRAY"
            if isinstance(node.get("const"), str) or "enum" in node:
                return "STRING"
            raise self._reject("type", where, "is missing: Gemini's schema has no 'any value' type")
        if declared not in _TYPES:
            raise self._reject("type", where, f"{declared!r} cannot be expressed in Gemini's schema")
        return _TYPES[declared]

    def _values(self, node: dict[str, Any], out: dict[str, Any], gemini_type: str | None, where: str) -> None:
        if "const" in node:
            if not isinstance(node["const"], str):
                raise self._reject("const", where, "other than a string cannot be expressed in Gemini's schema")
            out["enum"] = [node["const"]]
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not all(isinstance(v, str) or v is None for v in values):
                raise self._reject(
                    "enum", where, "with values other than strings cannot be expressed in Gemini's schema"
                )
            if None in values:
                out["nullable"] = True
            out["enum"] = [v for v in values if v is not None]
            if gemini_type != "STRING":
                raise self._reject("enum", where, "on a type other than string cannot be expressed in Gemini's schema")
        fmt = node.get("format")
        if fmt is not None:
            if fmt in _FORMATS.get(gemini_type or "", ()):
                out["format"] = fmt
            else:  # Gemini rejects other formats; the model still reads the intent from the description
                hint = f"Format: {fmt}."
                out["description"] = f"{out['description']} {hint}" if out.get("description") else hint

    def _object(self, node: dict[str, Any], out: dict[str, Any], where: str, resolving: frozenset[str]) -> None:
        additional = node.get("additionalProperties")
        if additional not in (None, False):
            raise self._reject("additionalProperties", where, "(free-form keys) cannot be expressed in Gemini's schema")
        properties = node.get("properties")
        if properties is None:
            return
        if not isinstance(properties, dict):
            raise self._reject("properties", where, "must be an object")
        out["properties"] = {
            name: self.convert(sub, f"{where}/properties/{name}", resolving) for name, sub in properties.items()
        }
        if len(properties) > 1 and "propertyOrdering" not in out:
            # Gemini orders generated keys by this hint; keep the client's order.
            out["propertyOrdering"] = list(properties)


def has_properties(schema: Mapping[str, Any]) -> bool:
    """Whether an object schema declares any property (Gemini rejects an OBJECT with none)."""
    return bool(schema.get("properties")) or bool(schema.get("anyOf"))
