"""Parsing untrusted JSON: every command and the server read requests and files with this."""

from __future__ import annotations

import json
from typing import Any


class JSONNestingError(ValueError):
    """JSON nested more deeply than Python's parser can go."""


def parse_json(text: str | bytes | bytearray) -> Any:
    """`json.loads`, except that JSON nested too deeply to parse (e.g. 100 KB of `[[[[`) is a
    `JSONNestingError` (a ValueError, like any other bad input) instead of a RecursionError.
    Every command and the server parse untrusted JSON with this."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONNestingError("invalid JSON: nested too deeply") from None
