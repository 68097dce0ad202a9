"""Limits on what a request may carry: identifiers that every thread store can key by, and a
size for every untrusted text (persona facts, passages, the draft, the whole request).

Messages have their own limits in `RefineRequest`; these are the rest. The Refiner passes its
config's values in the validation context; the defaults below apply otherwise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

DEFAULTS: dict[str, int] = {
    "max_persona_facts": 200,
    "max_fact_chars": 2_000,
    "max_passages": 50,
    "max_passage_chars": 20_000,
    "max_draft_chars": 64_000,
    "max_request_chars": 1_000_000,
}

REQUEST_LIMITS = ("max_messages", "max_message_chars", *DEFAULTS)
"""The RefinerConfig fields a request is validated against."""


def limit(context: Mapping[str, Any] | None, name: str) -> int:
    return (context or {}).get(name, DEFAULTS[name])


def check_identifier(value: str) -> str:
    """A user or thread id without control characters: PostgreSQL refuses NUL in text, where
    SQLite takes it, so such an id is refused here, the same 400 whatever the backend (and no
    terminal escape code reaches a log or `redraft persona show`). Pydantic already refuses
    lone surrogates."""
    for index, char in enumerate(value):
        if unicodedata.category(char) == "Cc":
            raise ValueError(
                f"must not contain control characters (U+{ord(char):04X} at position {index})"
            )
    return value


def check_texts(texts: Sequence[str], *, what: str, most: int, most_chars: int) -> None:
    """At most `most` texts of at most `most_chars` characters each; the error names the first
    one too long by its index (the field is named by pydantic)."""
    if len(texts) > most:
        raise ValueError(f"at most {most} {what}s are accepted, got {len(texts)}")
    for index, text in enumerate(texts):
        if len(text) > most_chars:
            raise ValueError(
                f"{what} {index} has {len(text)} characters; at most {most_chars} are accepted"
            )


def draft_chars(draft: Any) -> int:
    """The length of a handed-in draft, given as text or as an assistant message."""
    text = draft if isinstance(draft, str) else getattr(draft, "content", None)
    return len(text or "")


def check_total(chars: int, context: Mapping[str, Any] | None) -> None:
    most = limit(context, "max_request_chars")
    if chars > most:
        raise ValueError(
            f"the request's texts (messages, persona, knowledge, draft) have {chars} characters "
            f"together; at most {most} are accepted"
        )


class ReplyTooLong(Exception):
    """A model wrote more than `max_reply_chars`: an upstream gone wrong, not a reply to keep,
    store in a thread or send on."""


def check_reply(text: str | None, max_chars: int | None, what: str) -> None:
    if max_chars is not None and text is not None and len(text) > max_chars:
        raise ReplyTooLong(
            f"the model's {what} has {len(text)} characters; at most {max_chars} are accepted "
            "(max_reply_chars)"
        )


def bounded(on_delta: Callable[[str], None], max_chars: int | None) -> Callable[[str], None]:
    """`on_delta` that passes on at most `max_chars` characters in all."""
    if max_chars is None:
        return on_delta
    sent = 0

    def send(delta: str) -> None:
        nonlocal sent
        delta = delta[: max(0, max_chars - sent)]
        if delta:
            sent += len(delta)
            on_delta(delta)

    return send


MAX_ERRORS_SHOWN = 5
"""Validation errors named in one message: 100,000 empty messages are one error repeated, and
listing them all made a 6.4 MB error body."""
MAX_NAME_CHARS = 40


def field_errors(
    error: ValidationError, rename: Mapping[str, str] | None = None
) -> tuple[list[tuple[str, str, str]], int]:
    """The first MAX_ERRORS_SHOWN errors as (field, message, pydantic type), and how many
    there are in all. A field name comes from the input: it is cut to MAX_NAME_CHARS, and one
    that is not plain text is shown quoted."""
    rename = rename or {}
    shown = []
    for item in error.errors()[:MAX_ERRORS_SHOWN]:
        parts = []
        for part in map(str, item["loc"]):
            part = rename.get(part, part)
            if len(part) > MAX_NAME_CHARS:
                part = part[:MAX_NAME_CHARS] + "…"
            parts.append(part if part.isprintable() else repr(part))
        shown.append((".".join(parts), item["msg"], item["type"]))
    return shown, error.error_count()
