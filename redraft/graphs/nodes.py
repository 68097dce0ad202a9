"""Nodes every strategy shares: load the turn's context, draft, plan, finish the turn."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from redraft.agents import CRITICS
from redraft.agents.planner import plan_critics
from redraft.agents.responder import write_draft
from redraft.config import RefinerConfig
from redraft.errors import RefineError
from redraft.llm import Models
from redraft.state import Degradation, Plan, RefineRequest, TurnState

log = structlog.get_logger("redraft")

Node = Callable[..., Awaitable[dict[str, Any]]]


def settings(runtime: Runtime[RefinerConfig], fallback: RefinerConfig) -> RefinerConfig:
    """The run's context when one was given (LangGraph Server, per-call overrides), else the
    config the graph was built with."""
    return runtime.context if isinstance(runtime.context, RefinerConfig) else fallback


def timed(name: str, node: Node) -> Node:
    """Adds the node's wall time to `timings` and logs one event per node."""

    @functools.wraps(node)
    async def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        update = await node(*args, **kwargs)
        ms = (time.perf_counter() - started) * 1000
        update = dict(update or {})
        update["timings"] = {**update.get("timings", {}), name: ms}
        log.info("node", node=name, ms=round(ms, 2), **_log_fields(update))
        return update

    return run


def _log_fields(update: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    critiques = update.get("critiques")
    if isinstance(critiques, list) and critiques:
        fields["verdicts"] = {c["aspect"]: c["verdict"] for c in critiques}
    if update.get("plan"):
        fields["aspects"] = update["plan"]["aspects"]
    if isinstance(update.get("degraded"), list) and update["degraded"]:
        fields["degraded"] = [d["step"] for d in update["degraded"]]
    return fields


def degraded(step: str, error: BaseException | str) -> dict[str, str]:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return Degradation(step=step, reason=reason[:500]).model_dump()


def merge_history(stored: list[dict[str, str]], incoming: list[dict[str, str]]) -> list[dict]:
    """Append the request's messages to a stored thread.

    Callers may send only the new messages, or the whole conversation again (as OpenAI clients
    do); a resent prefix is recognised and not duplicated.
    """
    if stored and incoming[: len(stored)] == stored:
        return list(incoming)
    return stored + incoming


async def load_context(state: TurnState) -> dict[str, Any]:
    request = RefineRequest.model_validate(state["request"])
    incoming = [m.model_dump() for m in request.messages]
    return {
        "history": merge_history(list(state.get("history") or []), incoming),
        "user_id": request.user_id,
        "persona": request.persona,
        "knowledge": request.knowledge,
        "draft": request.draft or "",
        "drafted": request.draft is None,
        "reply": "",
        "streamed": False,
        "plan": Plan(source="none").model_dump(),
        "round": 1,
        "pending": [],
        "critiques": {"reset": []},
        "changes": {"reset": []},
        "degraded": {"reset": []},
        "timings": {"reset": True},
    }


def make_draft(models: Models, config: RefinerConfig) -> Node:
    async def draft(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        if not state.get("drafted"):
            return {"reply": state["draft"]}
        cfg = settings(runtime, config)
        try:
            model = models.for_role("responder", cfg)
            text = await write_draft(model, state["history"], state["persona"], state["knowledge"])
        except Exception as exc:
            raise RefineError(f"no draft could be written: {exc}", step="draft", cause=exc) from exc
        if not text:
            raise RefineError("the responding model returned an empty reply", step="draft")
        return {"draft": text, "reply": text}

    return draft


def make_plan(models: Models, config: RefinerConfig) -> Node:
    async def plan(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        aspects = [a for a in cfg.critics if a in CRITICS]
        if cfg.planner == "all":
            reasons = {a: "planner=all checks every configured aspect" for a in aspects}
            return {"plan": Plan(aspects=aspects, reasons=reasons, source="all").model_dump()}
        try:
            chosen = await plan_critics(
                models.for_role("planner", cfg),
                aspects=aspects,
                history=state["history"],
                reply=state["reply"],
                persona_count=len(state["persona"]),
                knowledge_count=len(state["knowledge"]),
                method=cfg.structured_output,
            )
        except Exception as exc:
            # Without a plan, checking everything is the safe choice.
            reasons = {a: "planner failed; checking every aspect" for a in aspects}
            fallback = Plan(aspects=aspects, reasons=reasons, source="all")
            return {"plan": fallback.model_dump(), "degraded": [degraded("plan", exc)]}
        return {"plan": chosen.model_dump()}

    return plan


async def finalize(state: TurnState) -> dict[str, Any]:
    """The reply joins the thread's history; the turn is complete.

    A reply that was not streamed while written goes to the stream whole.
    """
    reply = state.get("reply") or state["draft"]
    if not state.get("streamed"):
        get_stream_writer()({"token": reply})
    return {"reply": reply, "history": [*state["history"], {"role": "assistant", "content": reply}]}
