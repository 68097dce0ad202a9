"""Typed errors. A turn raises only when no reply at all can be produced."""

from __future__ import annotations


class RefineError(RuntimeError):
    """No reply could be produced for this turn (e.g. drafting failed and no draft was given)."""

    def __init__(self, message: str, *, step: str, cause: BaseException | None = None):
        super().__init__(message)
        self.step = step
        self.cause = cause
