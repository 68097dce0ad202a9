"""Typed errors, one hierarchy: every error redraft raises on purpose is a `RedraftError`.

Each class also keeps the built-in base that says what kind of failure it is (`ValueError` for
bad input, `RuntimeError` for a failure to do the work), so callers may catch either. A turn
raises only when no reply at all can be produced (`RefineError`).

The helpers below turn errors into one line for people (the CLI, the server, the eval runner).
"""

from __future__ import annotations

from pydantic import ValidationError

from redraft.request_limits import field_errors


class RedraftError(Exception):
    """Base of every error redraft raises on purpose."""


class RefineError(RedraftError, RuntimeError):
    """No reply could be produced for this turn (e.g. drafting failed and no draft was given)."""

    def __init__(self, message: str, *, step: str, cause: BaseException | None = None):
        super().__init__(message)
        self.step = step
        self.cause = cause


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each offending field, e.g. `messages.0.role: Input should be ...`
    (the first few: see `field_errors`)."""
    shown, total = field_errors(error)
    parts = [f"{where or 'request'}: {message}" for where, message, _ in shown]
    if total > len(shown):
        parts.append(f"and {total - len(shown)} more")
    return "; ".join(parts)


def describe_os_error(exc: OSError) -> str:
    """`path: reason` (both paths of a rename or copy), e.g. `/x/home: Permission denied`."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' → '.join(paths)}: {reason}" if paths else reason
