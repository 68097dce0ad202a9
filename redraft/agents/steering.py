"""The output check on a refined reply: it must answer the user, not carry out an instruction
that was planted in data (a persona fact, a passage, a knowledge-base file, a tool result).

Prompts already keep data in delimited blocks and restate the task after them; this is the
last line of defence, for a model that obeys text in data anyway. It is deliberately narrow:
a reply is rejected only when it is (nearly) nothing but what an instruction in the data told
the assistant to say, and neither the user's message nor the draft said it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_INSTRUCTION = re.compile(
    r"\b(?:reply|respond|answer|say|write|output|print|return|tell (?:the user|them|him|her))"
    r"(?:\s+(?:with|only|just|exactly|back|to the user|the word|the words|this|that))*"
    r"\s*[:=]?\s*[\"'“‘]?(?P<said>[^\"'”’\n]{2,300})",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")


def _words(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def echoed_instruction(
    reply: str, *, draft: str, user_message: str, data: Iterable[tuple[str, str]]
) -> str | None:
    """The slot whose planted instruction the reply carries out, or None.

    `data` is (slot, text) pairs: everything in the turn that is not the user's own words.
    """
    said = _words(reply)
    allowed = _words(user_message) + " " + _words(draft)
    if not said or said in allowed:
        return None
    for slot, text in data:
        for match in _INSTRUCTION.finditer(text):
            payload = _words(match.group("said"))
            if len(payload) < 2 or payload in allowed:
                continue
            # The reply is the payload, or the payload is most of the reply.
            if said in payload or (payload in said and len(payload) * 2 >= len(said)):
                return slot
    return None
