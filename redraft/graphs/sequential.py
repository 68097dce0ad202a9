"""MARA as published: the planner orders the agents and each one rewrites the reply in turn.

Kept as a faithful strategy to compare against `parallel`: k agents cost k round trips.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from redraft.agents import CRITICS
from redraft.agents.prompting import agent_system, user_message
from redraft.config import RefinerConfig
from redraft.graphs.deadline import by_deadline
from redraft.graphs.nodes import Node, degraded, settings
from redraft.llm import Models, call_structured
from redraft.state import Change, CriticTask, Critique, SequentialStepOutput, TurnState

REWRITE = """
After your critique, rewrite the reply so that it resolves the issues you found, changing
nothing else, and return the full rewritten reply in `reply` (the reply as it was when the
verdict is `pass`).
"""


def refiner_agent(aspect: str) -> str:
    return f"{aspect}_refiner"


def make_sequential(models: Models, config: RefinerConfig) -> Node:
    async def sequential(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        reply = state["reply"]
        critiques, changes, skipped = [], [], []
        for aspect in state["plan"]["aspects"]:
            critic = CRITICS[aspect]
            task = CriticTask(
                reply=reply,
                round=1,
                history=state["history"],
                persona=state["persona"],
                knowledge=state["knowledge"],
                evidence=state.get("evidence") or [],
            )
            agent = refiner_agent(aspect)
            messages = [
                agent_system(agent, critic.SYSTEM + REWRITE),
                user_message(critic.render(task)),
            ]
            try:
                model = models.for_role("critic", cfg)
                step = await by_deadline(
                    call_structured(
                        model,
                        SequentialStepOutput,
                        messages,
                        agent=agent,
                        method=cfg.structured_output,
                    ),
                    state,
                    cfg,
                )
            except Exception as exc:
                skipped.append(degraded(aspect, exc))
                continue
            fields = step.model_dump(exclude={"reply"})
            critiques.append(Critique(aspect=aspect, **fields).model_dump())
            new_reply = step.reply.strip()
            if step.verdict != "pass" and new_reply and new_reply != reply:
                changes.append(Change(aspect=aspect, change="rewrote the reply").model_dump())
                reply = new_reply
        return {"reply": reply, "critiques": critiques, "changes": changes, "degraded": skipped}

    return sequential
