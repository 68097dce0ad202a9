"""Bearer API keys (`REDRAFT_API_KEYS`), optionally bound to one user id per key.

A key bound to a user id acts only as that user: it cannot name another user, so one tenant
cannot reach another's threads or persona. An unbound key may act for any user id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from redraft.config import ApiKey
from redraft.server.errors import ApiError


@dataclass(frozen=True)
class Caller:
    """Who is calling: `user_id` is the bound user, or None when the key is unbound."""

    user_id: str | None = None


def _digest(value: str) -> bytes:
    # Digests have one length, so comparing them does not reveal the length of a key either.
    return hashlib.sha256(value.encode()).digest()


def make_authenticate(keys: list[ApiKey]) -> Callable[[Request], Caller]:
    """The caller of a request, or 401; with no keys configured every caller is let in, unbound."""
    known = [(_digest(key.key.get_secret_value()), key.user_id) for key in keys]

    def authenticate(request: Request) -> Caller:
        if not known:
            return Caller()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
        presented = _digest(token.strip())
        bound: str | None = None
        matched = False
        for digest, user_id in known:  # compare with every key: timing reveals no position
            if hmac.compare_digest(presented, digest):
                matched, bound = True, user_id
        if not matched:
            raise _unauthorized("invalid API key")
        return Caller(user_id=bound)

    return authenticate


def user_for(caller: Caller, requested: str | None) -> str | None:
    """The user id a request acts as: the bound user, or what the request names."""
    if caller.user_id is None:
        return requested
    if requested is not None and requested != caller.user_id:
        raise ApiError(
            403, "this API key is bound to another user", param="user", code="user_mismatch"
        )
    return caller.user_id


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})
