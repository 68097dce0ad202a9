"""Build minimal valid instances of JSON Schemas.

Offline test doubles must answer structured-output and tool calls without a real model;
a minimal instance of the requested schema is the most neutral answer that still
validates against the caller's pydantic model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def instance_for_schema(schema: Mapping[str, Any]) -> Any:
    """Return a minimal value that validates against ``schema``.

    Supports the subset emitted by pydantic v2 ``model_json_schema()`` and OpenAI strict
    schema conversion. Nullable unions resolve to ``None`` (minimal, and it terminates
    recursive models); explicit ``default`` values win over everything else.
    """
    return _fill(schema, schema)


def _fill(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if schema.get("enum"):
        return copy.deepcopy(schema["enum"][0])
    if "$ref" in schema:
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        return _fill({**_resolve(schema["$ref"], root), **siblings}, root)
    if "allOf" in schema:
        return _fill(_merge_all_of(schema, root), root)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = schema[union]
            nullable = [option for option in options if option.get("type") == "null"]
            return _fill((nullable or options)[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "null"
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _fill(sub, root) for name, sub in properties.items()}
    if kind == "array":
        return _array(schema, root)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    return None


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local JSON pointer such as ``#/$defs/Name`` or ``#/definitions/Name``."""
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref values are supported, got {ref!r}")
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _merge_all_of(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """Combine ``allOf`` parts into one schema, uniting their ``properties``."""
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema["allOf"]:
        part = _resolve(part["$ref"], root) if "$ref" in part else part
        properties = {**merged.get("properties", {}), **part.get("properties", {})}
        merged.update(part)
        if properties:
            merged["properties"] = properties
    return merged


def _array(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Any]:
    items = [_fill(sub, root) for sub in schema.get("prefixItems", [])]
    missing = schema.get("minItems", 0) - len(items)
    if missing > 0:
        items += [_fill(schema.get("items", {}), root) for _ in range(missing)]
    return items


def _string(schema: Mapping[str, Any]) -> str:
    if schema.get("format") in _STRING_FORMATS:
        return _STRING_FORMATS[schema["format"]]
    value = "example".ljust(schema.get("minLength", 0), "x")
    return value[: schema.get("maxLength", len(value))]


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """Try zero, then values next to each bound, returning the first one in range."""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = schema.get("multipleOf")
    candidates = [0]
    if low is not None:
        candidates += [low, low + 1]
        if step:
            candidates += [math.ceil(low / step) * step, (math.floor(low / step) + 1) * step]
    if high is not None:
        candidates += [high, high - 1]
    if low is not None and high is not None:
        candidates.append((low + high) / 2)
    for candidate in candidates:
        value = math.ceil(candidate) if integer else float(candidate)
        if _in_range(value, schema):
            return value
    raise ValueError(f"cannot find a number satisfying {dict(schema)!r}")


def _in_range(value: float, schema: Mapping[str, Any]) -> bool:
    checks = (
        ("minimum", lambda bound: value >= bound),
        ("maximum", lambda bound: value <= bound),
        ("exclusiveMinimum", lambda bound: value > bound),
        ("exclusiveMaximum", lambda bound: value < bound),
        ("multipleOf", lambda step: math.isclose(value / step, round(value / step))),
    )
    return all(check(schema[key]) for key, check in checks if key in schema)
