"""Parsing untrusted JSON: every command and the server read requests and files with this."""

from __future__ import annotations

import json
import math
from typing import Any

from redraft.errors import RedraftError

MAX_NUMBER_DIGITS = 100
"""Longest number literal accepted. No field redraft reads needs more; Python's own limit
(4,300 digits) raises a ValueError from deep inside the parser, and very long literals cost
quadratic time to convert."""


class JSONLimitError(RedraftError, ValueError):
    """JSON that is well-formed but refused: nested too deeply to parse, a number too long or
    out of range (`1e999`, `NaN`), or an object with a duplicate key."""


class JSONNestingError(JSONLimitError):
    """JSON nested more deeply than Python's parser can go."""


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped (`\\x1b`, `\\n`), so a file
    name or an identifier from the input cannot write terminal escape codes or extra lines."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def excerpt(text: str, limit: int = 40) -> str:
    """At most `limit` characters of untrusted text, escaped (`printable`), so an error
    message can quote it without echoing a file or writing terminal escape codes."""
    return printable(text[:limit]) + ("…" if len(text) > limit else "")


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise JSONLimitError(
            f"invalid JSON: a number with {len(literal)} digits (at most {MAX_NUMBER_DIGITS})"
        )
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_DIGITS:
        raise JSONLimitError(
            f"invalid JSON: a number of {len(literal)} characters (at most {MAX_NUMBER_DIGITS})"
        )
    value = float(literal)
    if not math.isfinite(value):
        raise JSONLimitError(f"invalid JSON: the number {excerpt(literal)} is out of range")
    return value


def _constant(name: str) -> float:
    raise JSONLimitError(f"invalid JSON: {name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Which of two values counts is parser-specific: refuse rather than guess.
            raise JSONLimitError(f"invalid JSON: duplicate key {excerpt(key)!r}")
        result[key] = value
    return result


def parse_json(text: str | bytes | bytearray) -> Any:
    """`json.loads` for untrusted input: whatever it cannot take (nested too deeply, e.g.
    100 KB of `[[[[`; huge or non-finite numbers; duplicate keys) is a `JSONLimitError`,
    a ValueError like any other bad input, instead of a RecursionError or an unnamed ValueError.
    """
    try:
        return json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except RecursionError:
        raise JSONNestingError("invalid JSON: nested too deeply") from None
