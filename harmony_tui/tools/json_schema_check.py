"""A small JSON Schema check for function-tool arguments: the types, ``required``,
``properties``, ``enum``, ``const``, ``items`` and ``additionalProperties`` of the schemas models
are given, with the first problem said in one line (``arguments.location: expected string``)."""

from __future__ import annotations

import json
from typing import Any

JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _matches_type(value: Any, expected: str) -> bool:
    actual = json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == expected


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    kinds = {json_type(a), json_type(b)}
    if kinds <= {"integer", "number"}:
        return bool(a == b)
    return len(kinds) == 1 and a == b


def schema_problem(value: Any, schema: Any, path: str = "arguments") -> str | None:
    """The first way ``value`` breaks ``schema`` (type, enum, required, properties, items,
    additionalProperties: false), naming the field; None when it fits."""
    if not isinstance(schema, dict):
        return None
    expected = schema.get("type")
    if expected is not None:
        kinds = [k for k in (expected if isinstance(expected, list) else [expected])
                 if k in JSON_TYPES]
        if kinds and not any(_matches_type(value, kind) for kind in kinds):
            return (f"{path}: expected {' or '.join(kinds)}, got {json_type(value)} "
                    f"{_short(value)}")
    choices = schema.get("enum")
    if isinstance(choices, list) and not any(_same_json(value, c) for c in choices):
        return f"{path}: {_short(value)} is not one of {', '.join(map(_short, choices))}"
    if isinstance(value, dict):
        return _object_problem(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{path}[{index}]")
            if problem:
                return problem
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any], path: str) -> str | None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    for key in schema.get("required") or []:
        if key not in value:
            return f"{path}.{key}: this required field is missing"
    for key, item in value.items():
        if key in properties:
            problem = schema_problem(item, properties[key], f"{path}.{key}")
            if problem:
                return problem
        elif schema.get("additionalProperties") is False:
            known = ", ".join(properties) or "none"
            return f"{path}.{key}: unknown field (known fields: {known})"
    return None


# --- the tool --------------------------------------------------------------------------------
