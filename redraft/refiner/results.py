"""The `RefineResult` of a turn: read from the graph's last state, then amended by what happened
around the graph (a deadline that stopped it, a question asked, memory or a thread lost)."""

from __future__ import annotations

import time
from typing import Any

from redraft.errors import RefineError
from redraft.graphs.deadline import TurnTimedOut
from redraft.llm.usage import UsageTracker
from redraft.state import Critique, Degradation, Plan, RefineResult, SafetyQuestion


def result_from(
    state: dict[str, Any],
    tracker: UsageTracker,
    *,
    started: float,
    strategy: str,
    thread_id: str | None,
) -> RefineResult:
    """The result in the graph's state `state`, with the usage `tracker` counted and the time
    since `started` (a `time.perf_counter()`) as the total."""
    timings = {node: round(ms, 2) for node, ms in (state.get("timings") or {}).items()}
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    draft = state.get("draft") or ""
    reply = state.get("reply") or draft
    return RefineResult(
        reply=reply,
        draft=draft,
        changed=reply != draft,
        plan=Plan.model_validate(state.get("plan") or {}),
        critiques=[Critique.model_validate(c) for c in state.get("critiques") or []],
        asked=state.get("asked") or [],
        blocked=bool(state.get("blocked")),
        gate=state.get("gate"),
        changes=state.get("changes") or [],
        overridden=state.get("overridden") or [],
        tool_calls=state.get("tool_calls") or None,
        degraded=state.get("degraded") or None,
        citations=state.get("citations") or [],
        usage=tracker.usage,
        timings=timings,
        strategy=strategy,
        thread_id=thread_id,
    )


def cut_at_deadline(
    result: RefineResult, stopped: TurnTimedOut, *, draft: str | None, deadline_s: float | None
) -> RefineResult:
    """The result of a turn stopped at its deadline: the best reply so far (the handed-in
    `draft` at worst), said in `degraded`. Raises RefineError when there is none."""
    if not result.reply and draft:
        result = result.model_copy(update={"reply": draft, "draft": draft})
    if not result.reply:
        raise RefineError(
            f"no reply within the deadline of {deadline_s:g} s", step="deadline", cause=stopped
        ) from stopped
    return degraded_by(result, Degradation(step="deadline", reason=f"the turn was {stopped}"))


def asking(
    result: RefineResult, question: SafetyQuestion | None, state: dict[str, Any]
) -> RefineResult:
    """The result of a turn in which the safety agent asked the user a question (paused in
    its thread, or, unthreaded, found in the state): the question is the reply the user sees
    instead of the draft, so the reply changed."""
    if question is None and state.get("ask"):
        question = SafetyQuestion(**state["ask"])
    if question is None:
        return result
    return result.model_copy(
        update={"question": question, "reply": question.question, "changed": True}
    )


def degraded_by(result: RefineResult, *problems: Degradation | None) -> RefineResult:
    """`result` with `problems` (those that are not None) added to its `degraded`."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return result
    return result.model_copy(update={"degraded": [*(result.degraded or []), *found]})
