"""The regression gate (`gate=True`): the refined reply is sent only if a judge prefers it.

Self-correction can make a reply worse (Huang et al., ICLR 2024), so a refined reply is not
assumed better than its draft. When a turn changed the reply, a pairwise judge compares draft
and refined reply in both orders (two concurrent calls); the draft is kept unless the refined
reply wins on the mean scores. No call when the reply did not change; safety decisions (a
crisis message, a question to the user, a safety revision or its fallback caution) are never
undone. A failing judge keeps the refined reply and the turn records it in `degraded`.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from redraft.agents.factuality import cited_passages
from redraft.agents.judge import JudgeContext
from redraft.agents.pairwise_judge import compare
from redraft.config import RefinerConfig
from redraft.graphs.deadline import by_deadline
from redraft.graphs.nodes import Node, degraded, settings
from redraft.llm.calls import Models
from redraft.safety.ask import safety_changed
from redraft.state import Critique, GateDecision, TurnState

LABELS = ("draft", "refined")


def needs_gate(state: TurnState, cfg: RefinerConfig) -> bool:
    """The gate judges only turns whose reply was rewritten by critique, not by safety: when the
    safety agent asked for changes this turn (a revision or its fallback caution), the refined
    reply is sent as it is, whatever a judge would prefer."""
    return (
        cfg.gate
        and bool(state.get("reply"))
        and state["reply"] != state["draft"]
        and not state.get("blocked")
        and not state.get("ask")
        and not safety_changed(state)
    )


def draft_citations(state: TurnState) -> list[dict[str, Any]]:
    """The passages the draft rests on, by the first round's factuality critique (the one that
    checked the draft): not those that only supported the discarded correction."""
    factual = next(
        (
            Critique.model_validate(c)
            for c in state.get("critiques") or []
            if c["aspect"] == "factuality" and c["round"] == 1
        ),
        None,
    )
    if factual is None:
        return []
    return cited_passages(factual, state.get("evidence") or [], corrected=False)


def make_gate(models: Models, config: RefinerConfig) -> Node:
    async def gate(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        context = JudgeContext(
            history=state["history"], persona=state["persona"], knowledge=state["knowledge"]
        )
        try:
            verdict = await by_deadline(
                compare(
                    models.for_role("judge", cfg),
                    context,
                    state["draft"],
                    state["reply"],
                    labels=LABELS,
                    method=cfg.structured_output,
                ),
                state,
                cfg,
            )
        except Exception as exc:
            decision = GateDecision(kept="refined")
            return {"gate": decision.model_dump(), "degraded": [degraded("gate", exc)]}
        if verdict.winner == "refined":
            return {"gate": GateDecision(kept="refined", verdict=verdict).model_dump()}
        # The draft stands: the edits were not applied after all.
        return {
            "reply": state["draft"],
            "streamed": False,
            "changes": {"reset": []},
            "citations": draft_citations(state),
            "gate": GateDecision(kept="draft", verdict=verdict).model_dump(),
        }

    return gate
