"""Identify which redraft agent issued a chat request.

Every redraft agent starts its system message with a ``[agent: NAME]`` marker so that
offline test doubles (the fake HTTP provider, the scripted chat model) can route scripted
responses per agent without parsing anything else in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

AGENT_PATTERN = re.compile(r"\[agent: ([a-z_]+)\]")
DEFAULT_AGENT = "default"


def agent_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the agent named in the first system message, else ``"default"``.

    ``messages`` are OpenAI-style dicts whose content is a string or a list of content
    parts (``{"type": "text", "text": ...}``).
    """
    for message in messages:
        if message.get("role") == "system":
            match = AGENT_PATTERN.search(content_text(message.get("content")))
            return match.group(1) if match else DEFAULT_AGENT
    return DEFAULT_AGENT


def content_text(content: Any) -> str:
    """Flatten OpenAI message content (string or list of parts) into plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text" and "text" in part
        )
    return ""
