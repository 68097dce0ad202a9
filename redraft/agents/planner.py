"""MARA's planner: one structured call choosing this turn's critics, in order, with reasons."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel

from redraft.agents.prompting import agent_system, block, conversation, user_message
from redraft.llm.calls import call_structured
from redraft.state import Plan, PlannerOutput

AGENT = "planner"

ASPECT_HINTS = {
    "factuality": "the reply states facts, numbers, dates or names that should match evidence",
    "personalization": "what is known about the user should shape the reply",
    "coherence": "the reply must stay consistent with earlier turns of the conversation",
    "safety": "the query touches a sensitive domain where a careless answer could harm the user",
}

SYSTEM = """\
You are the planner of a reply-refinement system. Given a conversation and a draft reply, choose
which aspects of the reply need checking before it is sent, most important first, with one short
reason each. Choose only aspects that matter for this turn: small talk and greetings need none.
Aspects you may choose from:
{aspects}
"""


def system_prompt(aspects: Sequence[str]) -> str:
    return SYSTEM.format(aspects="\n".join(f"- {a}: {ASPECT_HINTS[a]}" for a in aspects))


async def plan_critics(
    model: BaseChatModel,
    *,
    aspects: Sequence[str],
    history: Sequence[dict[str, str]],
    reply: str,
    persona_count: int,
    knowledge_count: int,
    method: str,
) -> Plan:
    facts = (
        f"Knowledge passages available: {knowledge_count}. "
        f"Facts known about the user: {persona_count}."
    )
    messages = [
        agent_system(AGENT, system_prompt(aspects)),
        user_message(conversation(history, last=6), block("reply", reply), facts),
    ]
    output = await call_structured(model, PlannerOutput, messages, agent=AGENT, method=method)
    chosen: dict[str, str] = {}
    for step in output.steps:
        if step.aspect in aspects and step.aspect not in chosen:
            chosen[step.aspect] = step.reason
    return Plan(aspects=list(chosen), reasons=chosen, source="llm")
