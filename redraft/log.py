"""structlog set-up: JSON lines when stdout is not a terminal, text at DEBUG only."""

from __future__ import annotations

import logging
import sys

import structlog

_level = logging.INFO


def configure_logging(level: str = "INFO") -> None:
    """Configure structlog once per process; safe to call again with another level."""
    global _level
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    _level = numeric
    renderer = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def text_fields(**fields: object) -> dict[str, object]:
    """Message or persona text, attached to log events only at DEBUG (privacy)."""
    if _level <= logging.DEBUG:
        return fields
    return {}
