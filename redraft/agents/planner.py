"""MARA's planner: one structured call choosing this turn's critics, in order, with reasons.

The critics it may choose and the hint for each come from the critics themselves
(`Critic.planner_hint`); its output schema names every critic the graph has (an enum), and a
choice outside this turn's critics is dropped rather than failing the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.language_models import BaseChatModel

from redraft.agents import CRITICS, Critic
from redraft.agents.prompting import agent_system, block, conversation, user_message
from redraft.llm.calls import call_structured
from redraft.state import Plan, planner_output

AGENT = "planner"

SYSTEM = """\
You are the planner of a reply-refinement system. Given a conversation and a draft reply, choose
which aspects of the reply need checking before it is sent, most important first, with one short
reason each. Choose only aspects that matter for this turn: small talk and greetings need none.
Aspects you may choose from:
{aspects}
"""


def system_prompt(aspects: Sequence[str], critics: Mapping[str, Critic] | None = None) -> str:
    """The prompt listing `aspects` with their critics' hints (`critics`: the graph's; the
    registered ones by default)."""
    known = CRITICS if critics is None else critics
    return SYSTEM.format(aspects="\n".join(f"- {a}: {known[a].planner_hint}" for a in aspects))


async def plan_critics(
    model: BaseChatModel,
    *,
    aspects: Sequence[str],
    history: Sequence[dict[str, str]],
    reply: str,
    persona_count: int,
    knowledge_count: int,
    method: str,
    critics: Mapping[str, Critic] | None = None,
) -> Plan:
    """Choose among `aspects` (this turn's critics) for the turn; `critics` as for
    `system_prompt`."""
    known = CRITICS if critics is None else critics
    facts = (
        f"Knowledge passages available: {knowledge_count}. "
        f"Facts known about the user: {persona_count}."
    )
    messages = [
        agent_system(AGENT, system_prompt(aspects, known)),
        user_message(conversation(history, last=6), block("reply", reply), facts),
    ]
    schema = planner_output(tuple(known))
    output = await call_structured(model, schema, messages, agent=AGENT, method=method)
    chosen: dict[str, str] = {}
    for step in output.steps:
        if step.aspect in aspects and step.aspect not in chosen:
            chosen[step.aspect] = step.reason
    return Plan(aspects=list(chosen), reasons=chosen, source="llm")
