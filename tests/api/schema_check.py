"""A small JSON Schema (2020-12 subset) validator for checking responses against the
OpenAPI document, with no extra dependency.

It knows exactly the keywords pydantic emits for our models and fails loudly on any other,
so a schema it cannot judge is never passed by accident.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

_IGNORED = {"title", "description", "default", "examples", "deprecated", "readOnly"}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class SchemaError(AssertionError):
    pass


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


class Validator:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise SchemaError(f"only local refs are supported: {ref}")
        node: Any = self.document
        for part in ref[2:].split("/"):
            node = node[part]
        resolved: dict[str, Any] = node
        return resolved

    def validate(self, value: Any, schema: dict[str, Any], path: str = "$") -> None:
        unknown = set(schema) - _IGNORED - set(_CHECKS)
        if unknown:
            raise SchemaError(f"{path}: unsupported schema keywords {sorted(unknown)}")
        for key, check in _CHECKS.items():
            if key in schema:
                check(self, value, schema, path)


def _ref(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    v.validate(value, v.resolve(schema["$ref"]), path)


def _type(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(_is_type(value, n) for n in names):
        raise SchemaError(f"{path}: {type(value).__name__} is not {names}")


def _any_of(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    errors = []
    for option in schema["anyOf"]:
        try:
            v.validate(value, option, path)
        except SchemaError as exc:
            errors.append(str(exc))
        else:
            return
    raise SchemaError(f"{path}: matches no anyOf option ({'; '.join(errors)})")


def _one_of(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    matches = 0
    for option in schema["oneOf"]:
        try:
            v.validate(value, option, path)
        except SchemaError:
            continue
        matches += 1
    if matches != 1:
        raise SchemaError(f"{path}: matches {matches} oneOf options, not exactly one")


def _all_of(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    for option in schema["allOf"]:
        v.validate(value, option, path)


def _enum(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if value not in schema["enum"]:
        raise SchemaError(f"{path}: not one of {schema['enum']}")


def _const(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if value != schema["const"]:
        raise SchemaError(f"{path}: not {schema['const']!r}")


def _properties(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        return
    for name, sub in schema["properties"].items():
        if name in value:
            v.validate(value[name], sub, f"{path}.{name}")


def _required(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, dict):
        missing = [n for n in schema["required"] if n not in value]
        if missing:
            raise SchemaError(f"{path}: missing {missing}")


def _additional(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        return
    extra = schema["additionalProperties"]
    known = set(schema.get("properties", {}))
    for name, item in value.items():
        if name in known:
            continue
        if extra is False:
            raise SchemaError(f"{path}: unexpected property {name!r}")
        if isinstance(extra, dict):
            v.validate(item, extra, f"{path}.{name}")


def _pattern_properties(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, dict):
        for pattern, sub in schema["patternProperties"].items():
            for name, item in value.items():
                if re.search(pattern, name):
                    v.validate(item, sub, f"{path}.{name}")


def _property_names(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, dict):
        for name in value:
            v.validate(name, schema["propertyNames"], f"{path}[key]")


def _items(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            v.validate(item, schema["items"], f"{path}[{i}]")


def _bounds(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if not _is_type(value, "number"):
        return
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "minimum": operator.ge,
        "maximum": operator.le,
        "exclusiveMinimum": operator.gt,
        "exclusiveMaximum": operator.lt,
    }
    for key, ok in checks.items():
        if key in schema and not ok(value, schema[key]):
            raise SchemaError(f"{path}: {value} breaks {key} {schema[key]}")


def _lengths(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, str | list | dict):
        size = len(value)
        low = schema.get("minLength", schema.get("minItems", schema.get("minProperties", 0)))
        high = schema.get("maxLength", schema.get("maxItems", schema.get("maxProperties")))
        if size < low or (high is not None and size > high):
            raise SchemaError(f"{path}: length {size} outside [{low}, {high}]")


def _pattern(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if isinstance(value, str) and re.search(schema["pattern"], value) is None:
        raise SchemaError(f"{path}: does not match {schema['pattern']}")


def _format(v: Validator, value: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(value, str):
        return
    if schema["format"] == "date-time":
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            raise SchemaError(f"{path}: not an RFC 3339 date-time")
        datetime.fromisoformat(value)


_CHECKS = {
    "$ref": _ref,
    "type": _type,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "allOf": _all_of,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "patternProperties": _pattern_properties,
    "propertyNames": _property_names,
    "items": _items,
    "minimum": _bounds,
    "maximum": _bounds,
    "exclusiveMinimum": _bounds,
    "exclusiveMaximum": _bounds,
    "minLength": _lengths,
    "maxLength": _lengths,
    "minItems": _lengths,
    "maxItems": _lengths,
    "minProperties": _lengths,
    "maxProperties": _lengths,
    "pattern": _pattern,
    "format": _format,
}
