"""OpenAI-style error objects, so OpenAI clients raise their usual typed exceptions.

Every failure the server answers is `{"error": {"message", "type", "param", "code"}}` with the
right status: bad input is a 4xx naming the field, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from redraft.errors import RedraftError
from redraft.request_limits import field_errors

log = structlog.get_logger("redraft.server")

# status → (type, code) as OpenAI names them
_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "too_many_requests"),
    502: ("server_error", "upstream_failed"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
}


class ApiError(RedraftError):
    """An error answered to the client as an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None):
    kind, default_code = _KINDS.get(status, ("server_error", None))
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }


def api_error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.status, exc.message, exc.param, exc.code),
        status_code=exc.status,
        headers=exc.headers,
    )


def invalid_request(error: ValidationError, rename: dict[str, str] | None = None) -> ApiError:
    """A 400 naming the offending fields (`messages.0.role: Input should be ...`).

    `rename` maps internal field names to the request's (e.g. `user_id` → `user`). At most
    MAX_ERRORS_SHOWN are named, so the error body stays small whatever the request.
    """
    shown, total = field_errors(error, rename)
    parts = [
        f"{where or 'request'}: "
        + ("unrecognized request argument" if kind == "extra_forbidden" else message)
        for where, message, kind in shown
    ]
    if total > len(shown):
        parts.append(f"and {total - len(shown)} more")
    return ApiError(400, "; ".join(parts), param=shown[0][0] or None)


def install_error_handlers(app: FastAPI, on_error: Callable[[int], Any]) -> None:
    """Answer every error OpenAI-style; `on_error(status)` counts them."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        on_error(exc.status)
        return api_error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        on_error(exc.status_code)
        return api_error_response(ApiError(exc.status_code, str(exc.detail), headers=exc.headers))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("server.error", error=type(exc).__name__)
        on_error(500)
        return api_error_response(ApiError(500, f"internal error: {type(exc).__name__}"))
