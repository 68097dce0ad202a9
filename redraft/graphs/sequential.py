"""MARA as published: the planner orders the agents and each one rewrites the reply in turn.

Kept as a faithful strategy to compare against `parallel`: k agents cost k round trips.
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
from pydantic import Field

from redraft.agents import CRITICS
from redraft.agents.editor import merge_critiques
from redraft.agents.prompting import agent_system, user_message
from redraft.config import RefinerConfig
from redraft.graphs.deadline import by_deadline
from redraft.graphs.nodes import Node, critic_task, degraded, settings
from redraft.llm.calls import Models, call_structured
from redraft.safety import critic as safety
from redraft.safety.ask import safety_outcome
from redraft.state import Change, CriticTask, Critique, SequentialStepOutput, TurnState

REWRITE = """
After your critique, rewrite the reply so that it resolves the issues you found, changing
nothing else, and return the full rewritten reply in `reply` (the reply as it was when the
verdict is `pass`).
"""


class SafetyStepOutput(safety.SafetyOutput):
    """The safety agent's sequential step: its full verdict, then the rewritten reply."""

    reply: str = Field(description="The full reply after this agent's refinement.")


def refiner_agent(aspect: str) -> str:
    return f"{aspect}_refiner"


def safety_first(aspects: Sequence[str]) -> list[str]:
    """The planner's order, with safety (top precedence) moved to the front."""
    return sorted(aspects, key=lambda aspect: aspect != safety.ASPECT)


def make_sequential(models: Models, config: RefinerConfig) -> Node:
    async def safety_step(
        task: CriticTask, cfg: RefinerConfig, state: TurnState
    ) -> tuple[Critique, str]:
        """The safety agent's verdict (its rules enforced, as in `parallel`) and its rewrite."""
        agent = refiner_agent(safety.ASPECT)

        async def run() -> tuple[Critique, str]:
            prepared = await safety.prepare(task, cfg)
            messages = [
                agent_system(agent, safety.SYSTEM + REWRITE),
                user_message(safety.render(prepared)),
            ]
            step = await call_structured(
                models.for_role("critic", cfg),
                SafetyStepOutput,
                messages,
                agent=agent,
                method=cfg.structured_output,
            )
            output = safety.SafetyOutput.model_validate(step.model_dump(exclude={"reply"}))
            critique = safety.finalize(output, prepared, cfg)
            # Its rewrite counts for its own revision only (with ask or block the reply is not
            # used): a question it may not ask (known, declined, past the cap) becomes a
            # caution that the editor applies.
            return critique, step.reply.strip() if output.verdict == "revise" else ""

        return await by_deadline(run(), state, cfg)

    async def edit(
        critique: Critique, reply: str, cfg: RefinerConfig, state: TurnState
    ) -> tuple[str, list[dict[str, Any]]]:
        """A safety revision the safety agent did not write itself (its fallback caution, or
        issues without a rewrite) is applied by the editor; on failure the reply stands."""
        edited = await by_deadline(
            merge_critiques(
                models.for_role("editor", cfg),
                history=state["history"],
                reply=reply,
                critiques=[critique],
                knowledge=state["knowledge"],
                method=cfg.structured_output,
                max_chars=cfg.max_reply_chars,
            ),
            state,
            cfg,
        )
        return edited.reply.strip() or reply, [c.model_dump() for c in edited.changes]

    async def sequential(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        reply = state["reply"]
        critiques, changes, skipped = [], [], []
        for aspect in safety_first(state["plan"]["aspects"]):
            critic = CRITICS[aspect]
            task = critic_task(state, reply, 1, cfg)
            agent = refiner_agent(aspect)
            if aspect == safety.ASPECT:
                try:
                    critique, new_reply = await safety_step(task, cfg, state)
                except Exception as exc:
                    # As in `parallel`: a failed safety check is a caution, never a pass.
                    skipped.append(degraded(aspect, exc))
                    critique, new_reply = safety.fallback(task), ""
                critiques.append(critique.model_dump())
                decided = safety_outcome([critique], cfg)
                if decided is not None:
                    # A crisis or a question ends the round: no later agent rewrites it.
                    return {**decided, "critiques": critiques, "degraded": skipped}
                if critique.verdict != "revise":
                    continue
                if new_reply and new_reply != reply:
                    changes.append(Change(aspect=aspect, change="rewrote the reply").model_dump())
                    reply = new_reply
                    continue
                try:
                    reply, edits = await edit(critique, reply, cfg, state)
                except Exception as exc:
                    skipped.append(degraded("merge", exc))
                    continue
                changes.extend(edits)
                continue
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
