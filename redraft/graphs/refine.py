"""The refinement graph: draft → plan → parallel critics (Send) → merge, plus the baselines.

One graph serves every strategy, so they share the API, the state and the result shape and can
be compared on the same turns: `parallel` (default), `sequential` (MARA as published),
`self_refine` and `none`. `graph` at module level is what `langgraph.json` serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from redraft.agents import CRITICS
from redraft.agents.critic import run_critic
from redraft.agents.editor import merge_critiques, resolve_conflicts
from redraft.config import RefinerConfig
from redraft.graphs.baselines import make_self_refine
from redraft.graphs.nodes import (
    Node,
    degraded,
    finalize,
    load_context,
    make_draft,
    make_plan,
    settings,
    timed,
)
from redraft.graphs.sequential import make_sequential
from redraft.llm import Models
from redraft.state import CriticTask, Critique, TurnState


def critic_task(state: TurnState, reply: str, round_: int) -> CriticTask:
    return CriticTask(
        reply=reply,
        round=round_,
        history=state["history"],
        persona=state["persona"],
        knowledge=state["knowledge"],
    )


def make_critic_node(aspect: str, models: Models, config: RefinerConfig) -> Node:
    critic = CRITICS[aspect]

    async def critic_node(task: CriticTask, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        try:
            model = models.for_role("critic", cfg)
            critique = await run_critic(critic, model, task, cfg.structured_output)
        except Exception as exc:
            return {"degraded": [degraded(aspect, exc)]}
        return {"critiques": [critique.model_dump()]}

    critic_node.__name__ = aspect
    return critic_node


def make_merge(models: Models, config: RefinerConfig) -> Node:
    async def merge(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        """No edit when every critic passes; otherwise one rewrite under the precedence."""
        cfg = settings(runtime, config)
        this_round = [
            Critique.model_validate(c) for c in state["critiques"] if c["round"] == state["round"]
        ]
        to_apply, overridden = resolve_conflicts(
            [c for c in this_round if c.verdict != "pass" and c.issues]
        )
        pending = [c.aspect for c in to_apply]
        if not to_apply:
            return {"pending": []}
        notes = [degraded("merge", note) for note in overridden]
        # Stream the reply only when no later round can change it again.
        stream = ReplyStream() if state["round"] >= cfg.max_rounds else None
        try:
            edited = await merge_critiques(
                models.for_role("editor", cfg),
                history=state["history"],
                reply=state["reply"],
                critiques=to_apply,
                knowledge=state["knowledge"],
                method=cfg.structured_output,
                on_reply_delta=stream.send if stream else None,
            )
        except Exception as exc:
            if stream:
                stream.reset()
            # The best reply so far stands.
            return {"pending": [], "degraded": [*notes, degraded("merge", exc)]}
        reply = edited.reply.strip() or state["reply"]
        if stream and stream.sent != reply:
            stream.reset()
        return {
            "reply": reply,
            "streamed": bool(stream and stream.sent == reply),
            "pending": pending if reply != state["reply"] else [],
            "changes": [c.model_dump() for c in edited.changes],
            "degraded": notes,
        }

    return merge


class ReplyStream:
    """Sends reply text to the run's custom stream (`Refiner.astream` turns it into tokens)."""

    def __init__(self) -> None:
        self.write = get_stream_writer()
        self.sent = ""

    def send(self, delta: str) -> None:
        self.sent += delta
        self.write({"token": delta})

    def reset(self) -> None:
        """What was streamed is not the reply after all: listeners discard it."""
        if self.sent:
            self.write({"reset": True})
            self.sent = ""


def build_graph(
    config: RefinerConfig | None = None,
    *,
    model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
    checkpointer: Any = None,
    store: Any = None,
):
    """Compile the refinement graph.

    `model` overrides the configured chat models (one for every role, or role → model);
    `checkpointer` keeps threads; per-run settings may come in as LangGraph context.
    """
    config = config or RefinerConfig()
    unknown = [a for a in config.critics if a not in CRITICS]
    if unknown:
        raise ValueError(f"critics: unknown aspect(s) {unknown}; available: {sorted(CRITICS)}")
    models = Models(model)

    def after_draft(state: TurnState, runtime: Runtime[RefinerConfig]) -> str:
        return {"none": "finalize", "self_refine": "self_refine"}.get(
            settings(runtime, config).strategy, "plan"
        )

    def after_plan(state: TurnState, runtime: Runtime[RefinerConfig]) -> Any:
        if settings(runtime, config).strategy == "sequential":
            return "sequential"
        aspects = state["plan"]["aspects"]
        if not aspects:
            return "finalize"
        return [Send(a, critic_task(state, state["reply"], 1)) for a in aspects]

    def after_merge(state: TurnState, runtime: Runtime[RefinerConfig]) -> Any:
        cfg = settings(runtime, config)
        if not state["pending"] or state["round"] >= cfg.max_rounds:
            return "finalize"
        return "next_round"

    async def next_round(state: TurnState) -> dict[str, Any]:
        return {"round": state["round"] + 1}

    def recheck(state: TurnState) -> list[Send]:
        """Further rounds re-check only the aspects that asked for changes."""
        return [
            Send(a, critic_task(state, state["reply"], state["round"])) for a in state["pending"]
        ]

    builder = StateGraph(TurnState, context_schema=RefinerConfig)
    builder.add_node("load_context", timed("load_context", load_context))
    builder.add_node("draft", timed("draft", make_draft(models, config)))
    builder.add_node("plan", timed("plan", make_plan(models, config)))
    for aspect in CRITICS:
        builder.add_node(aspect, timed(aspect, make_critic_node(aspect, models, config)))
    builder.add_node("merge", timed("merge", make_merge(models, config)))
    builder.add_node("next_round", next_round)
    builder.add_node("sequential", timed("sequential", make_sequential(models, config)))
    builder.add_node("self_refine", timed("self_refine", make_self_refine(models, config)))
    builder.add_node("finalize", finalize)

    builder.add_edge(START, "load_context")
    builder.add_edge("load_context", "draft")
    builder.add_conditional_edges("draft", after_draft, ["plan", "self_refine", "finalize"])
    builder.add_conditional_edges("plan", after_plan, [*CRITICS, "sequential", "finalize"])
    for aspect in CRITICS:
        builder.add_edge(aspect, "merge")
    builder.add_conditional_edges("merge", after_merge, ["next_round", "finalize"])
    builder.add_conditional_edges("next_round", recheck, list(CRITICS))
    builder.add_edge("sequential", "finalize")
    builder.add_edge("self_refine", "finalize")
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, store=store, name="redraft")


def _server_graph():
    """The graph for `langgraph.json`: models from the environment, threads by the server."""
    return build_graph(RefinerConfig())


graph = _server_graph()
