"""Prompts that fit the model's context window.

Every agent's prompt is measured before it is sent. One that is too long is rebuilt with less
of its context, in a fixed order: the oldest history turns first, then knowledge passages past
the top few, then persona facts from the least relevant. The system prompt, the user's last
message and the reply under review are never cut. A prompt that still does not fit is not
sent: the agent degrades with `PromptTooLongError`.

The estimate needs no tokenizer: about three characters a token, which is more tokens than
BPE tokenizers count for English prose and JSON (tests/realmodel checks it against a real
server's counts), so a prompt that fits by the estimate fits for real.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from redraft.errors import RedraftError
from redraft.llm.output import wire_schema

CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 8  # the chat template's role markers and separators
KEEP_PASSAGES = 3
"""Passages kept to the last: the top few (retrieval ranks them first)."""

T = TypeVar("T")


class PromptTooLongError(RedraftError, ValueError):
    """A prompt that does not fit the context window even with its context trimmed."""


@dataclass(frozen=True)
class Trim:
    """How much of a prompt's trimmable context to leave out."""

    history_dropped: int = 0
    passages_kept: int | None = None
    persona_kept: int | None = None

    def history(self, turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The turns left: the oldest `history_dropped` go, never the last one, and no tool
        result is left without the call it answers."""
        drop = self._dropped(turns)
        while drop < len(turns) - 1 and turns[drop].get("role") == "tool":
            drop += 1
        return list(turns[drop:])

    def numbered_history(self, turns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same turns left, with the dropped ones kept as empty `omitted` markers, so
        that turns keep their numbers (critics quote turns by number)."""
        drop = self._dropped(turns)
        return [{**m, "content": "", "omitted": True} for m in turns[:drop]] + list(turns[drop:])

    def _dropped(self, turns: Sequence[Any]) -> int:
        return min(self.history_dropped, max(0, len(turns) - 1))

    def passages(self, items: Sequence[T]) -> list[T]:
        return list(items if self.passages_kept is None else items[: self.passages_kept])

    def persona(self, facts: Sequence[T]) -> list[T]:
        """Facts come most relevant first, so the last ones go first."""
        return list(facts if self.persona_kept is None else facts[: self.persona_kept])


NO_TRIM = Trim()


@dataclass(frozen=True)
class Prompt:
    """A prompt that can be rebuilt with less context: `build(trim)` gives the messages, and
    the sizes say how far each part can be cut."""

    build: Callable[[Trim], list[BaseMessage]]
    history: int = 0
    passages: int = 0
    persona: int = 0

    def trims(self) -> Iterator[Trim]:
        """Ever smaller versions of the prompt, in the documented order."""
        yield NO_TRIM
        for dropped in range(1, self.history):
            yield Trim(history_dropped=dropped)
        dropped = max(0, self.history - 1)
        for kept in range(self.passages - 1, KEEP_PASSAGES - 1, -1):
            yield Trim(dropped, passages_kept=kept)
        passages = min(self.passages, KEEP_PASSAGES)
        for kept in range(self.persona - 1, -1, -1):
            yield Trim(dropped, passages_kept=passages, persona_kept=kept)


def estimate_tokens(messages: Sequence[BaseMessage], schema: Any = None) -> int:
    """Tokens the messages (and a JSON schema sent along, as function calling does) take."""
    chars = sum(len(_text(m)) for m in messages)
    if schema is not None:
        spec = wire_schema(schema) if isinstance(schema, type) else schema
        chars += len(json.dumps(spec))
    return int(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def fit(
    prompt: Prompt | Sequence[BaseMessage],
    budget: int,
    schema: type[BaseModel] | None = None,
    *,
    agent: str,
) -> list[BaseMessage]:
    """The largest version of `prompt` within `budget` tokens.

    Each trim is smaller than the one before, so the first that fits is found by bisection:
    a few builds, not one per history turn. The messages returned are the last ones built.
    """
    if not isinstance(prompt, Prompt):
        messages = list(prompt)
        if (size := estimate_tokens(messages, schema)) > budget:
            raise PromptTooLongError(_too_long(agent, size, budget))
        return messages
    versions = list(prompt.trims())
    first = prompt.build(versions[0])
    if estimate_tokens(first, schema) <= budget:
        return first
    smallest = prompt.build(versions[-1])
    if (size := estimate_tokens(smallest, schema)) > budget:
        raise PromptTooLongError(_too_long(agent, size, budget))
    low, high = 1, len(versions) - 1  # versions[high] fits
    while low < high:
        middle = (low + high) // 2
        if estimate_tokens(prompt.build(versions[middle]), schema) <= budget:
            high = middle
        else:
            low = middle + 1
    # Built once more: the last build is the one sent (a builder may record what it used).
    return prompt.build(versions[high])


def _too_long(agent: str, size: int, budget: int) -> str:
    return (
        f"{agent}: prompt does not fit the context window: about {size} tokens after "
        f"trimming history, passages and persona, {budget} available"
    )


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        text = content
    else:
        text = json.dumps(content, default=str)
    calls = getattr(message, "tool_calls", None)
    if calls:
        text += json.dumps(calls, default=str)
    return text
