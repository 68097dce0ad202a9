"""The client's `response_format` (OpenAI's): JSON mode or a JSON schema the reply must meet.

Refinement must never break a JSON reply: a rewrite is kept only when it still parses (and
validates against the schema); otherwise the draft is the reply and `degraded` says why.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

JSON_FORMATS = ("json_object", "json_schema")


def check_format(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A `response_format` as OpenAI takes it; raises ValueError naming what is wrong."""
    if value is None:
        return None
    kind = value.get("type", "text")
    if kind not in ("text", *JSON_FORMATS):
        raise ValueError("type must be text, json_object or json_schema")
    if kind == "json_schema":
        from jsonschema import validators  # imported when a schema is given: not at startup
        from jsonschema.exceptions import SchemaError

        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError("json_schema needs a `name` and a `schema`")
        if schema is not None:
            if not isinstance(schema, dict):
                raise ValueError("json_schema.schema must be a JSON schema object")
            try:
                validators.validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                message = f"json_schema.schema is not a valid JSON schema: {exc.message}"
                raise ValueError(message) from None
    return value


def wants_json(value: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return value is not None and value.get("type") in JSON_FORMATS


def format_problem(reply: str, value: dict[str, Any] | None) -> str | None:
    """Why `reply` does not meet the format, or None when it does (or no JSON is asked for)."""
    if not wants_json(value):
        return None
    try:
        data = json.loads(reply)
    except json.JSONDecodeError as exc:
        return f"is not valid JSON ({exc.msg} at character {exc.pos})"
    except ValueError as exc:  # parsed, but not convertible: an integer of over 4300 digits
        return f"is not valid JSON ({exc})"
    if value["type"] == "json_object":
        return None if isinstance(data, dict) else "is JSON but not an object"
    schema = (value.get("json_schema") or {}).get("schema")
    if schema is None:
        return None
    from jsonschema import validators

    error = next(iter(validators.validator_for(schema)(schema).iter_errors(data)), None)
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the top level"
    return f"does not match the schema at {where}: {error.message[:200]}"
