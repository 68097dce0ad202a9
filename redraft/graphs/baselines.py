"""Self-Refine, the classic single-model baseline: one critique of everything, one rewrite.

It runs none of the critics (registered ones neither): one model reviews the reply as a whole,
which is the point of the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.runtime import Runtime

from redraft.agents.prompting import agent_system, block, blocks, conversation, user_message
from redraft.config import RefinerConfig
from redraft.graphs.deadline import MERGE_SHARE, by_deadline
from redraft.graphs.nodes import Node, degraded, rewrite, settings
from redraft.llm.calls import Models, call_structured
from redraft.state import CriticOutput, Critique, Plan, TurnState

AGENT = "self_refine"

SYSTEM = """\
Review the draft reply of a chatbot as a whole: is it correct given the knowledge passages,
suited to what is known about the user, and coherent with the conversation? List each problem
with the quoted span, the problem and the fix. Verdict `pass` when nothing needs to change,
otherwise `revise`.
"""


def make_self_refine(models: Models, config: RefinerConfig, precedence: Sequence[str]) -> Node:
    async def self_refine(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        plan = Plan(
            aspects=["overall"], reasons={"overall": "self-refine baseline"}, source="self_refine"
        ).model_dump()
        messages = [
            agent_system(AGENT, SYSTEM),
            user_message(
                conversation(state["history"], last=10),
                blocks("persona", "fact", state["persona"], "f"),
                blocks("knowledge", "passage", state["knowledge"], "p"),
                block("reply", state["reply"]),
            ),
        ]
        try:
            model = models.for_role("critic", cfg)
            output = await by_deadline(
                call_structured(
                    model, CriticOutput, messages, agent=AGENT, method=cfg.structured_output
                ),
                state,
                cfg,
                leave=MERGE_SHARE,
            )
        except Exception as exc:
            return {"plan": plan, "degraded": [degraded(AGENT, exc)]}
        critique = Critique(aspect="overall", **output.model_dump())
        update: dict[str, Any] = {"plan": plan, "critiques": [critique.model_dump()]}
        if critique.verdict == "pass" or not critique.issues:
            return update
        try:
            edited = await rewrite(models, cfg, state, state["reply"], [critique], precedence)
        except Exception as exc:
            return {**update, "degraded": [degraded("merge", exc)]}
        return {
            **update,
            "reply": edited.reply.strip() or state["reply"],
            "changes": [c.model_dump() for c in edited.changes],
        }

    return self_refine
