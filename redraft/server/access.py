"""One access-log line per request: method, path, status, milliseconds and request id.

No query string, header or body is logged: they may hold user text. The request id is the
client's `X-Request-ID` when it sends a plausible one, else a fresh one; it is echoed back in the
response's `X-Request-ID`, so a client's report can be matched with the server's line.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog

log = structlog.get_logger("redraft.access")

REQUEST_ID = b"x-request-id"
_PLAUSIBLE = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class AccessLog:
    """Pure ASGI middleware (not `BaseHTTPMiddleware`), so streams and client disconnects pass
    through untouched; the line is written when the response ends (or the client leaves)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope.get("headers") or []).get(REQUEST_ID, b"")
        request_id = given.decode() if _PLAUSIBLE.match(given) else uuid.uuid4().hex
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID]
                message = {**message, "headers": [*headers, (REQUEST_ID, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"][:200],
                status=status or 500,
                ms=round((time.perf_counter() - started) * 1000, 1),
                request_id=request_id,
            )
