"""Request limits: body size and type, and how many turns one process runs at once."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from redraft.parsing import JSONLimitError, JSONNestingError, parse_json
from redraft.server.errors import ApiError

RETRY_AFTER_S = 1


class TurnSlots:
    """At most `size` turns in flight; one more is turned away (429) rather than queued, so a
    load balancer or the client's retry can send it where there is room."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0

    def acquire(self) -> None:
        if self.in_use >= self.size:
            raise ApiError(
                429,
                f"busy: {self.size} turns are already running; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON body: 415 if it is not JSON, 413 past `max_bytes` (counted as it
    arrives, so a chunked body cannot slip past a missing Content-Length), 400 if malformed
    (nested too deeply, a number too long or out of range, a duplicate key included)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            f"Content-Type must be application/json, not {media_type or 'missing'}",
            param="Content-Type",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        return parse_json(body)
    except JSONNestingError:
        raise ApiError(400, "invalid JSON: the body is nested too deeply") from None
    except JSONLimitError as exc:
        raise ApiError(400, str(exc)) from None
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {max_bytes} bytes")
