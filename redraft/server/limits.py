"""Request limits: body size and type, how many turns one process runs at once, and how long
and how many connections may stay open."""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import Request
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from redraft.config import ServerConfig
from redraft.parsing import JSONLimitError, JSONNestingError, parse_json
from redraft.server.errors import ApiError, error_body

log = structlog.get_logger("redraft.server")

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
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
    except ClientDisconnect:  # e.g. cut at body_timeout_s: nobody is left to answer
        raise ApiError(400, "the client left before sending the whole body") from None
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


# ── connections: read deadlines and a cap ────────────────────────────────────────────


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server process allows a connection (ServerConfig's fields of the same names)."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, server: ServerConfig) -> ConnectionLimits:
        """The server's limits, with the connection cap kept FD_RESERVE below the process's
        file-descriptor limit: the upstream provider, the databases and the log need some."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        most = server.max_connections
        if soft != resource.RLIM_INFINITY and most > soft - FD_RESERVE:
            most = max(1, soft - FD_RESERVE)
            log.warning(
                "serve.max_connections_lowered",
                configured=server.max_connections,
                used=most,
                reason=f"ulimit -n is {soft}",
            )
        return cls(server.header_timeout_s, server.body_timeout_s, most)


FD_RESERVE = 128


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps(error_body(status, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += f"retry-after: {RETRY_AFTER_S}\r\n"
    return head.encode() + b"\r\n" + body


if TYPE_CHECKING:
    # The mixin's host, as the type checker sees it: uvicorn's httptools protocol has the same
    # attributes and hooks (connections, transport, cycle, loop, data_received, ...).
    _Host = H11Protocol
else:
    _Host = object


class _ReadDeadlines(_Host):
    """Mixin for uvicorn's HTTP protocols: a connection must send a request's headers within
    `header_timeout_s` (of opening, or of the previous response) and its body within
    `body_timeout_s` of the headers, or it is closed (408 if no request started); past
    `max_connections` open connections, the one waiting longest for its request's headers is
    answered 503 and closed, or, when all are busy with requests, the new one.

    uvicorn has no such deadlines: one client sending a header line every 5 s held its
    connection for as long as it liked, and a thousand of them used up the process's file
    descriptors, so real turns failed. The time the app takes to answer is not limited
    here (that is `request_timeout_s`)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._limits: ConnectionLimits = config.connection_limits
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._since = 0.0
        self._request: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections and not self._evict_one():
            log.info("connection.refused", reason="max_connections", open=len(self.connections))
            transport.write(
                _raw_response(503, "Service Unavailable", "busy: too many open connections")
            )
            transport.close()
            return
        self._arm("headers", self._limits.header_timeout_s)

    def _evict_one(self) -> bool:
        """At the cap, make room by closing the connection that has waited longest for a
        request's headers (a slow client, or an idle kept-alive one): a client that sends its
        request at once gets in, however many slow ones hold connections. False when every
        connection is busy with a request."""
        waiting = [
            c for c in self.connections if isinstance(c, _ReadDeadlines) and c._phase == "headers"
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._since)
        oldest._disarm()
        oldest.transport.write(
            _raw_response(503, "Service Unavailable", "busy: too many open connections")
        )
        oldest.transport.close()
        oldest.connections.discard(oldest)  # counted out now, not when the close completes
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is self._request:  # idle until the next request starts
            self._arm("headers", self._limits.header_timeout_s)
        else:
            self._follow()  # a pipelined request started at once

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle is not self._request:  # a request's headers are in
            self._request = cycle
            self._disarm()
            if cycle.more_body:
                self._arm("body", self._limits.body_timeout_s)
        elif self._phase == "body" and not cycle.more_body:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._since = self.loop.time()
        self._timer = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._phase = None, None

    def _expired(self, phase: str) -> None:
        self._timer, self._phase = None, None
        if self.transport.is_closing():
            return
        log.info("connection.timeout", phase=phase)
        if phase == "headers" and (self.cycle is None or self.cycle.response_complete):
            seconds = self._limits.header_timeout_s
            self.transport.write(
                _raw_response(408, "Request Timeout", f"no request within {seconds:g} s")
            )
            self.transport.close()
        elif phase == "body" and self.cycle is not None and self.cycle.more_body:
            self.transport.close()  # the app reading the body sees the client leave


if TYPE_CHECKING:  # a base picked at import time cannot be typed: the checker sees h11's
    _Protocol = H11Protocol
else:
    try:  # the protocol uvicorn picks by default: httptools when installed, else h11
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
    except ImportError:
        _Protocol = H11Protocol


class GuardedProtocol(_ReadDeadlines, _Protocol):
    """uvicorn's HTTP protocol with read deadlines and a connection cap; it reads them from
    the uvicorn config's `connection_limits` (a ConnectionLimits)."""
