"""The refinement graph: draft → plan → parallel critics (Send) → merge, plus the baselines.

One graph serves every strategy, so they share the API, the state and the result shape and can
be compared on the same turns: `parallel` (default), `sequential` (MARA as published),
`self_refine` and `none`. `langgraph.json` serves `graph` from `redraft/graphs/served.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, cast, get_origin, get_type_hints

from langchain_core.language_models import BaseChatModel
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from redraft.agents import CriticSet, critic_set
from redraft.agents.critic import Critic
from redraft.agents.editor import resolve_conflicts
from redraft.agents.factuality import cited_passages
from redraft.config import RefinerConfig
from redraft.graphs.baselines import make_self_refine
from redraft.graphs.deadline import MERGE_SHARE, time_left
from redraft.graphs.gate import make_gate, needs_gate
from redraft.graphs.nodes import (
    Node,
    answers_to_read,
    check,
    critic_task,
    degraded,
    finalize,
    finalized,
    make_draft,
    make_load_context,
    make_plan,
    rewrite,
    settings,
    timed,
)
from redraft.graphs.sequential import make_sequential
from redraft.llm.calls import Models
from redraft.safety.ask import after_question, make_ask_user, safety_outcome
from redraft.safety.critic import GENERIC_CAUTION, with_caution
from redraft.state import Change, CriticTask, Critique, TurnState


def make_critic_node(critic: Critic, models: Models, config: RefinerConfig) -> Node:
    async def critic_node(task: CriticTask, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        run = await check(critic, models, task, settings(runtime, config), leave=MERGE_SHARE)
        update: dict[str, Any] = {"critiques": [run.critique.model_dump()] if run.critique else []}
        if run.degraded:
            update["degraded"] = run.degraded
        return update

    critic_node.__name__ = critic.aspect
    return critic_node


AfterMerge = Literal["next_round", "ask_user", "gate", "__end__"]
"""Where a turn goes from the merge step (`__end__`: it ended there, finalized)."""

ADDED_TO = frozenset(
    name
    for name, hint in get_type_hints(TurnState, include_extras=True).items()
    if get_origin(hint) is Annotated
)
"""The state's fields that a node's update is added to (by their reducers), not replaces."""


def make_merge(models: Models, config: RefinerConfig, critics: CriticSet) -> Node:
    async def merge(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        """No edit when every critic passes; otherwise one rewrite under the precedence."""
        cfg = settings(runtime, config)
        this_round = [
            Critique.model_validate(c) for c in state["critiques"] if c["round"] == state["round"]
        ]
        # A crisis overrides everything; a question to the user comes before any rewrite.
        decided = safety_outcome(this_round, cfg)
        if decided is not None:
            return {**decided, "pending": []}
        to_apply, overridden = resolve_conflicts(
            [c for c in this_round if c.verdict != "pass" and c.issues], critics.precedence
        )
        pending = [c.aspect for c in to_apply]

        def cite(corrected: bool) -> dict[str, Any]:
            """The passages the reply rests on, by this round's factuality critique."""
            factual = next((c for c in this_round if c.aspect == "factuality"), None)
            if factual is None:
                return {}
            evidence = state.get("evidence") or []
            return {"citations": cited_passages(factual, evidence, corrected=corrected)}

        if not to_apply:
            return {"pending": [], **cite(corrected=False)}
        # Precedence at work, not a failure: reported in `overridden` and `changes`.
        left_out = {
            "overridden": [o.model_dump() for o in overridden],
            "changes": [
                Change(
                    aspect=o.aspect, change=f"fix for {o.span!r} left out: {o.by} overrides"
                ).model_dump()
                for o in overridden
            ],
        }
        # Stream the reply only when no later round (nor the gate) can change it again, and
        # the caller reads it as it is written.
        last = state["round"] >= cfg.max_rounds and not cfg.gate
        stream = ReplyStream() if last and streams_reply() else None
        try:
            edited = await rewrite(
                models,
                cfg,
                state,
                state["reply"],
                to_apply,
                critics.precedence,
                on_reply_delta=stream.send if stream else None,
            )
        except Exception as exc:
            if stream:
                stream.reset()
            # The best reply so far stands; a safety revision still reaches it (below).
            failed = [degraded("merge", exc)]
            return {
                "pending": [],
                "degraded": failed,
                **left_out,
                **cite(corrected=False),
                **cautioned(state, to_apply, left_out["changes"]),
            }
        reply = edited.reply.strip() or state["reply"]
        if stream and stream.sent != reply:
            stream.reset()
        return {
            "reply": reply,
            "streamed": bool(stream and stream.sent == reply),
            "pending": pending if reply != state["reply"] else [],
            **left_out,
            "changes": [*left_out["changes"], *(c.model_dump() for c in edited.changes)],
            **cite(corrected=reply != state["reply"] and "factuality" in pending),
        }

    return merge


def cautioned(state: TurnState, to_apply: list[Critique], changes: list[dict]) -> dict[str, Any]:
    """When the rewrite failed but the safety critic asked for one on a sensitive turn, the
    reply still gets a caution: a sensitive turn never ships the draft as it was. A turn is
    sensitive when the plan says so or the safety critic itself judged it (its own revise;
    the cautious fallback of a failed check alone is not a judgement)."""
    safety = next((c for c in to_apply if c.aspect == "safety"), None)
    plan = state.get("plan") or {}
    if safety is None or not (plan.get("sensitive") or GENERIC_CAUTION not in safety.issues):
        return {}
    change = Change(aspect="safety", change="added a caution: the rewrite failed")
    return {"reply": with_caution(state["reply"]), "changes": [*changes, change.model_dump()]}


STREAM_REPLY = "redraft_stream_reply"
"""Run-config key (`configurable`): False when the caller does not read the reply as it is
written (`Refiner.arefine`). Unset means True."""


def streams_reply() -> bool:
    """Whether to stream the editor's reply. Streaming costs CPU on every chunk (LangChain and
    the openai SDK parse each one): about ten unstreamed editor calls' worth (BENCHMARKS.md)."""
    return get_config().get("configurable", {}).get(STREAM_REPLY, True) is not False


class ReplyStream:
    """Sends reply text to the run's custom stream (`Refiner.astream` turns it into tokens)."""

    def __init__(self) -> None:
        self.write = get_stream_writer()
        self.sent = ""

    def send(self, delta: str) -> None:
        self.sent += delta
        self.write({"token": delta})

    def reset(self) -> None:
        """What was streamed is not the reply after all: listeners discard it. Nothing more is
        sent (an editor call abandoned at the deadline may still be writing)."""
        if self.sent:
            self.write({"reset": True})
            self.sent = ""
        self.write = lambda _: None


def build_graph(
    config: RefinerConfig | None = None,
    *,
    model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
    checkpointer: Any = None,
    store: Any = None,
    retrievers: Sequence[BaseRetriever] = (),
    critics: Sequence[Critic] = (),
    context_schema: type = RefinerConfig,
):
    """Compile the refinement graph.

    `model` overrides the configured chat models (one for every role, or role → model);
    `retrievers` are asked for evidence every turn, after the knowledge base (when configured);
    `critics` are this graph's own, beside the registered ones (always among its choices);
    `checkpointer` keeps threads; per-run settings may come in as LangGraph context: a whole
    RefinerConfig (trusted callers), or `RunSettings` (`context_schema=RunSettings`, for
    servers whose clients may only change how a turn is refined).
    """
    config = config or RefinerConfig()
    lineup = critic_set(critics)
    unknown = [a for a in config.critics if a not in lineup]
    if unknown:
        raise ValueError(f"critics: unknown aspect(s) {unknown}; available: {sorted(lineup)}")
    models = Models(model)

    # The routing functions are `async def` though they never wait: LangGraph sends a
    # synchronous one to a worker thread on every call, which costs more than it does.
    built_with = config  # `config` below is the run's (LangGraph passes it by that name)

    async def after_context(
        state: TurnState, runtime: Runtime[RefinerConfig], config: RunnableConfig
    ) -> str:
        """A handed-in draft skips the draft step when it has no answers to read either."""
        cfg = settings(runtime, built_with)
        if state["drafted"] or answers_to_read(state, runtime.store, cfg, config):
            return "draft"
        return await after_draft(state, runtime)

    async def after_draft(state: TurnState, runtime: Runtime[RefinerConfig]) -> str:
        if state.get("tool_calls"):  # a tool call goes back untouched: no critic, no edit
            return "finalize"
        return {"none": "finalize", "self_refine": "self_refine"}.get(
            settings(runtime, config).strategy, "plan"
        )

    async def after_plan(state: TurnState, runtime: Runtime[RefinerConfig]) -> Any:
        cfg = settings(runtime, config)
        if cfg.strategy == "sequential":
            return "sequential"
        aspects = state["plan"]["aspects"]
        if not aspects:
            return "finalize"
        return [Send(a, critic_task(state, state["reply"], 1, cfg)) for a in aspects]

    merge = timed("merge", make_merge(models, config, lineup))

    async def merge_step(state: TurnState, runtime: Runtime[RefinerConfig]) -> Command[AfterMerge]:
        """The merge, and where the turn goes from it. A turn that ends with this merge is
        finished in the same step instead of a `finalize` step of its own: most turns end so,
        and a graph step costs CPU (BENCHMARKS.md, "CPU per turn")."""
        update = await merge(state, runtime)
        after = {**state, **{k: v for k, v in update.items() if k not in ADDED_TO}}
        goto = await after_merge(cast(TurnState, after), runtime)
        if goto == "finalize":
            final = await finalize(cast(TurnState, after))
            return Command(update=finalized(update, final), goto=cast(AfterMerge, END))
        return Command(update=update, goto=goto)

    async def after_merge(
        state: TurnState, runtime: Runtime[RefinerConfig]
    ) -> Literal["next_round", "ask_user", "gate", "finalize"]:
        cfg = settings(runtime, config)
        if state.get("ask"):
            return "ask_user"
        # No further round when its critics would have no time left before the deadline.
        left = time_left(state, cfg, leave=MERGE_SHARE)
        out_of_time = left is not None and left <= 0
        if not state["pending"] or state["round"] >= cfg.max_rounds or out_of_time:
            return await after_rewrite(state, runtime)
        return "next_round"

    async def after_rewrite(
        state: TurnState, runtime: Runtime[RefinerConfig]
    ) -> Literal["gate", "finalize"]:
        return "gate" if needs_gate(state, settings(runtime, config)) else "finalize"

    async def after_sequential(state: TurnState, runtime: Runtime[RefinerConfig]) -> str:
        """The safety agent's question goes to the user, as in `parallel`."""
        return "ask_user" if state.get("ask") else await after_rewrite(state, runtime)

    async def next_round(state: TurnState) -> dict[str, Any]:
        return {"round": state["round"] + 1}

    async def recheck(state: TurnState, runtime: Runtime[RefinerConfig]) -> list[Send]:
        """Further rounds re-check only the aspects that asked for changes."""
        cfg = settings(runtime, config)
        return [
            Send(a, critic_task(state, state["reply"], state["round"], cfg))
            for a in state["pending"]
        ]

    builder = StateGraph(TurnState, context_schema=context_schema)
    builder.add_node("load_context", timed("load_context", make_load_context(config, retrievers)))
    builder.add_node("draft", timed("draft", make_draft(models, config)))
    builder.add_node("plan", timed("plan", make_plan(models, config, lineup)))
    for aspect, critic in lineup.items():
        builder.add_node(aspect, timed(aspect, make_critic_node(critic, models, config)))
    builder.add_node("merge", cast(Node, merge_step))  # routes by its Command
    builder.add_node("next_round", next_round)
    builder.add_node("sequential", timed("sequential", make_sequential(models, config, lineup)))
    builder.add_node(
        "self_refine", timed("self_refine", make_self_refine(models, config, lineup.precedence))
    )
    builder.add_node("ask_user", timed("ask_user", make_ask_user(models, config)))
    builder.add_node("gate", timed("gate", make_gate(models, config)))
    builder.add_node("finalize", finalize)

    builder.add_edge(START, "load_context")
    builder.add_conditional_edges(
        "load_context", after_context, ["draft", "plan", "self_refine", "finalize"]
    )
    builder.add_conditional_edges("draft", after_draft, ["plan", "self_refine", "finalize"])
    builder.add_conditional_edges("plan", after_plan, [*lineup, "sequential", "finalize"])
    for aspect in lineup:
        builder.add_edge(aspect, "merge")
    builder.add_conditional_edges("ask_user", after_question, ["draft", "finalize"])
    builder.add_conditional_edges("next_round", recheck, list(lineup))
    builder.add_conditional_edges("sequential", after_sequential, ["ask_user", "gate", "finalize"])
    builder.add_conditional_edges("self_refine", after_rewrite, ["gate", "finalize"])
    builder.add_edge("gate", "finalize")
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, store=store, name="redraft")


def __getattr__(name: str) -> Any:
    """`from redraft.graphs.refine import graph`: the graph LangGraph Server serves.

    Built on first use, not at import, so that a bad `REDRAFT_*` variable is reported by the
    command that reads it (one line) instead of breaking `import redraft`.
    """
    if name == "graph":
        from redraft.graphs.served import graph

        return graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
