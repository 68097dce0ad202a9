"""Reading what a model returned into an output schema, as leniently as is safe.

Small real models wrap their JSON in code fences or chatter, write an enum in another case
(`"Revise"`), give a 0–1 confidence as a percentage (`100`) or leave out an optional list.
Where the meaning is clear the value is mended; anything else still fails validation, so a
wrong answer is never invented.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from redraft.errors import RedraftError

T = TypeVar("T", bound=BaseModel)

_decoder = json.JSONDecoder()


class OutputNotParsedError(RedraftError, ValueError):
    """A model kept returning output that does not fit the schema."""


class ParseCounts:
    """How often each agent's structured output parsed, per structured-output mode, for the
    life of the process: `redraft eval` reports the failure rates (small models differ by
    mode, and a mode that rarely parses costs a retry per call)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], list[int]] = {}

    def record(self, agent: str, mode: str, *, parsed: bool) -> None:
        tries_unparsed = self._counts.setdefault((agent, mode), [0, 0])
        tries_unparsed[0] += 1
        tries_unparsed[1] += not parsed

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per (agent, mode): outputs read, outputs that did not parse, the rate."""
        return [
            {"agent": agent, "mode": mode, "outputs": n, "unparsed": bad, "rate": bad / n}
            for (agent, mode), (n, bad) in sorted(self._counts.items())
        ]

    def clear(self) -> None:
        self._counts.clear()


PARSE_COUNTS = ParseCounts()


def raw_text(message: BaseMessage) -> str | dict[str, Any]:
    """The structured part of a reply: its first tool call's arguments (already a dict when
    they parsed), else its text."""
    calls = getattr(message, "tool_calls", None) or []
    if calls:
        return dict(calls[0].get("args") or {})
    invalid = getattr(message, "invalid_tool_calls", None) or []
    if invalid and invalid[0].get("args"):
        return str(invalid[0]["args"])
    return str(message.text)


def first_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in `text`: the whole text, or the first `{...}` that decodes, so
    fenced (```json ... ```) and chatty output ("Sure! Here it is: {...}") both read."""
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    start = stripped.find("{")
    while start != -1:
        try:
            value, _ = _decoder.raw_decode(stripped, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = stripped.find("{", start + 1)
    raise ValueError(f"no JSON object in the output: {text[:200]!r}")


def read_output(schema: type[T], raw: str | dict[str, Any]) -> T:
    """`raw` (text or already-decoded arguments) validated against `schema`, mended first
    where the meaning is clear. Raises ValueError (pydantic's ValidationError is one)."""
    data = first_json_object(raw) if isinstance(raw, str) else raw
    try:
        return schema.model_validate(data)
    except ValidationError:
        spec = schema.model_json_schema()
        return schema.model_validate(coerce(data, spec, spec.get("$defs", {})))


def coerce(value: Any, spec: dict[str, Any], defs: dict[str, Any]) -> Any:
    """Mend `value` against the JSON schema `spec` where the meaning is clear:
    an enum value in another case or with spaces; a number on a 0–1 scale given in percent
    (1 < x ≤ 100); a whole number given as a float or a numeric string; a missing or null
    optional field (dropped, so its default applies); a single object where a list of them is
    expected. Everything else is left for validation to reject."""
    spec = _resolve(spec, defs)
    options = spec.get("anyOf") or spec.get("oneOf")
    if options:
        concrete = [_resolve(o, defs) for o in options if o.get("type") != "null"]
        if value is None or len(concrete) != 1:
            return value
        spec = concrete[0]
    if "enum" in spec and isinstance(value, str) and value not in spec["enum"]:
        folded = {str(v).casefold(): v for v in spec["enum"]}
        return folded.get(value.strip().casefold(), value)
    kind = spec.get("type")
    if kind == "object" and isinstance(value, dict):
        return _coerce_object(value, spec, defs)
    if kind == "array":
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list):
            items = spec.get("items", {})
            return [coerce(v, items, defs) for v in value]
        return value
    if kind == "number" and isinstance(value, int | float | str):
        number = _number(value)
        if number is None:
            return value
        if spec.get("minimum") == 0 and spec.get("maximum") == 1 and 1 < number <= 100:
            return number / 100
        return number
    if kind == "integer" and isinstance(value, float | str):
        number = _number(value)
        return int(number) if number is not None and float(number).is_integer() else value
    return value


def _coerce_object(value: dict[str, Any], spec: dict[str, Any], defs: dict[str, Any]) -> Any:
    properties = spec.get("properties", {})
    required = set(spec.get("required", []))
    mended: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in properties else _matching_key(key, properties)
        if name is None:
            mended[key] = item
            continue
        if item is None and name not in required and not _nullable(properties[name], defs):
            continue  # a null optional field: its default applies
        mended[name] = coerce(item, properties[name], defs)
    return mended


def _matching_key(key: str, properties: dict[str, Any]) -> str | None:
    """A field name written in another case (`Verdict`)."""
    folded = key.strip().casefold()
    return next((name for name in properties if name.casefold() == folded), None)


def _nullable(spec: dict[str, Any], defs: dict[str, Any]) -> bool:
    options = _resolve(spec, defs).get("anyOf") or []
    return any(o.get("type") == "null" for o in options)


def _resolve(spec: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref.removeprefix("#/$defs/"), spec)
    return spec


def _number(value: int | float | str) -> float | int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        return float(str(value).strip().rstrip("%"))
    except ValueError:
        return None


@cache
def wire_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The output schema as sent to a model: every `$ref` written out in place, no `$defs`,
    no `maxLength`.

    Servers turn schemas into grammars, and llama-cpp-python's server dies on a grammar it
    cannot parse ("failed to parse grammar"): a `maxLength` of a few hundred becomes rules
    nested that deep, and not every converter follows references. Lengths are still checked:
    `read_output` validates against the full schema.
    """
    spec = schema.model_json_schema()
    defs = spec.pop("$defs", {})

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in seen:
                    raise ValueError(f"{schema.__name__}: recursive schema ({name})")
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(defs[name], (*seen, name)), **extra}
            return {k: inline(v, seen) for k, v in node.items() if k != "maxLength"}
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        return node

    return inline(spec, ())
