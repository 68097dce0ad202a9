"""MARA as published: the planner orders the agents and each one rewrites the reply in turn.

Kept as a faithful strategy to compare against `parallel`: k agents cost k round trips. Each
agent is its critic, run through the same check as in `parallel` (its `prepare`, output schema,
`finalize` and `fallback`), asked to rewrite the reply in the same call. A revision it did not
write itself (its fallback's, or issues with no rewrite) is applied by the editor.
Safety keeps the precedence it has in every strategy, so its agent goes first whatever the
planner's order: a crisis (`block`) ends the turn with the supportive message and crisis
resources, a question (`ask`) goes to the user (the same interrupt as `parallel`) before any
other agent runs, and a failed or unparseable safety step is a generic caution (applied by the
editor), never a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.runtime import Runtime

from redraft.agents import CriticSet
from redraft.agents.critic import Rewrite
from redraft.config import RefinerConfig
from redraft.graphs.nodes import Node, check, critic_task, degraded, rewrite, settings
from redraft.llm.calls import Models
from redraft.safety import critic as safety
from redraft.safety.ask import safety_outcome
from redraft.state import Change, TurnState

REWRITE = """
After your critique, rewrite the reply so that it resolves the issues you found, changing
nothing else, and return the full rewritten reply in `reply` (the reply as it was when the
verdict is `pass`).
"""


def refiner_agent(aspect: str) -> str:
    return f"{aspect}_refiner"


def safety_first(aspects: Sequence[str]) -> list[str]:
    """The planner's order, with safety (top precedence) moved to the front."""
    return sorted(aspects, key=lambda aspect: aspect != safety.ASPECT)


def make_sequential(models: Models, config: RefinerConfig, critics: CriticSet) -> Node:
    async def sequential(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        reply = state["reply"]
        critiques, changes, skipped = [], [], []
        for aspect in safety_first(state["plan"]["aspects"]):
            task = critic_task(state, reply, 1, cfg)
            run = await check(
                critics[aspect], models, task, cfg, rewrite=Rewrite(refiner_agent(aspect), REWRITE)
            )
            skipped.extend(run.degraded)
            critique = run.critique
            if critique is None:
                continue
            critiques.append(critique.model_dump())
            decided = safety_outcome([critique], cfg)
            if decided is not None:
                # A crisis or a question ends the round: no later agent rewrites it.
                return {**decided, "critiques": critiques, "degraded": skipped}
            if critique.verdict != "revise":
                continue
            if run.reply and run.reply != reply:
                changes.append(Change(aspect=aspect, change="rewrote the reply").model_dump())
                reply = run.reply
                continue
            try:
                edited = await rewrite(models, cfg, state, reply, [critique], critics.precedence)
            except Exception as exc:  # the reply stands
                skipped.append(degraded("merge", exc))
                continue
            reply = edited.reply.strip() or reply
            changes.extend(c.model_dump() for c in edited.changes)
        return {"reply": reply, "critiques": critiques, "changes": changes, "degraded": skipped}

    return sequential
