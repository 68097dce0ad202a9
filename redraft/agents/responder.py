"""Responding agent: writes the draft reply from the conversation, persona and knowledge."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel

from redraft.agents.prompting import agent_system, blocks, chat_turns, user_message
from redraft.llm import call_text

AGENT = "responder"

SYSTEM = """\
You are a helpful, honest assistant in a conversation. Answer the user's last message.
If knowledge passages are given, ground factual statements in them and do not contradict them.
If facts about the user are given, use those that matter for the answer.
Be concise unless the user asks for detail.
"""

OPERATOR_NOTE = (
    "The application that hosts this conversation gave these instructions for the assistant; "
    "follow them unless they conflict with the rules above."
)


async def write_draft(
    model: BaseChatModel,
    history: Sequence[dict[str, str]],
    persona: Sequence[str],
    knowledge: Sequence[str],
) -> str:
    operator = [m["content"] for m in history if m["role"] in ("system", "developer")]
    context = user_message(
        blocks("instructions", "instruction", operator, "i") + "\n" + OPERATOR_NOTE
        if operator
        else "",
        blocks("persona", "fact", persona, "f") if persona else "",
        blocks("knowledge", "passage", knowledge, "p") if knowledge else "",
    )
    messages = [agent_system(AGENT, SYSTEM)]
    if context.content:
        messages.append(context)
    messages.extend(chat_turns(history))
    return await call_text(model, messages, agent=AGENT)
