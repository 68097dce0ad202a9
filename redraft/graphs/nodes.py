"""Nodes every strategy shares: load the turn's context, draft, plan, finish the turn; and the
two steps every strategy takes the same way: a critic's check, and the editor's rewrite."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from redraft.agents import CriticSet
from redraft.agents.critic import Critic, Rewrite, run_critic
from redraft.agents.editor import merge_critiques
from redraft.agents.planner import plan_critics
from redraft.agents.prompting import last_user_message, user_request
from redraft.agents.responder import draft_turn
from redraft.agents.steering import echoed_instruction
from redraft.config import RefinerConfig, RunSettings
from redraft.errors import RefineError
from redraft.graphs.deadline import DeadlineExceeded, by_deadline
from redraft.knowledge.retrieval import request_passages, turn_evidence
from redraft.llm.calls import Models, current_tracker
from redraft.personas.recall import persona_for_turn, remembers
from redraft.personas.store import PersonaStore, embeddings_for, question_key
from redraft.request_limits import ReplyTooLong, check_reply
from redraft.response_format import format_problem, wants_json
from redraft.routing.plans import (
    hybrid_plan,
    keep_decision,
    plan_from_route,
    prefetch_route,
    route_turn,
    router_ready,
)
from redraft.safety.critic import attribute_facts, read_answer
from redraft.state import (
    CriticTask,
    Critique,
    Degradation,
    EditorOutput,
    Passage,
    Plan,
    RefineRequest,
    SafetyQuestion,
    TurnState,
)

log = structlog.get_logger("redraft")

Node = Callable[..., Awaitable[dict[str, Any]]]


def settings(runtime: Runtime[RefinerConfig], fallback: RefinerConfig) -> RefinerConfig:
    """The settings of this run.

    A full RefinerConfig as context (from `Refiner`, in-process and trusted) is used as it is;
    `RunSettings` (LangGraph Server clients) change only the fields they set, on top of the
    config the graph was built with; no context means that config.
    """
    context = runtime.context
    if isinstance(context, RefinerConfig):
        return context
    if isinstance(context, RunSettings):
        return fallback.model_copy(update=context.model_dump(exclude_unset=True))
    return fallback


def timed(name: str, node: Node) -> Node:
    """Adds the node's wall time to `timings`; one event per node at DEBUG (at INFO, the turn's
    one line, `turn.done`, carries every node's time: a line per node cost CPU on every turn)."""

    @functools.wraps(node)
    async def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        update = await node(*args, **kwargs)
        ms = (time.perf_counter() - started) * 1000
        update = dict(update or {})
        update["timings"] = {**update.get("timings", {}), name: ms}
        # LangGraph Server's structlog loggers have no `is_enabled_for`: they filter themselves.
        if getattr(log, "is_enabled_for", lambda _: True)(logging.DEBUG):
            tracker = current_tracker()
            tokens = tracker.tokens_by_node.get(name, 0) if tracker else None
            log.debug("node", node=name, ms=round(ms, 2), tokens=tokens, **_log_fields(update))
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


def critic_task(state: TurnState, reply: str, round_: int, cfg: RefinerConfig) -> CriticTask:
    """What a critic reads of the turn, in every strategy: the reply to check and its context,
    with what the safety agent needs (known and declined attributes, questions left)."""
    return CriticTask(
        reply=reply,
        round=round_,
        started=state.get("started"),
        history=state["history"],
        persona=state["persona"],
        knowledge=state["knowledge"],
        evidence=state.get("evidence") or [],
        request=user_request(state["history"], (a["question"] for a in state.get("asked") or [])),
        attributes=state.get("attributes") or {},
        declined=state.get("declined") or [],
        questions_left=max(0, cfg.max_questions - (state.get("questions_asked") or 0)),
        domain=(state.get("plan") or {}).get("domain"),
    )


@dataclass(frozen=True)
class CriticRun:
    """One critic's check in a turn: its critique (its fallback's when the call failed; None
    when it failed without one), its own rewrite (with `Rewrite`) and what failed."""

    critique: Critique | None
    reply: str = ""
    degraded: list[dict[str, str]] = field(default_factory=list)


async def check(
    critic: Critic,
    models: Models,
    task: CriticTask,
    cfg: RefinerConfig,
    *,
    leave: float = 0.0,
    rewrite: Rewrite | None = None,
) -> CriticRun:
    """A critic's check as every strategy runs it: its hooks, the turn's deadline (`leave`: the
    share kept for later steps) and, when anything fails, its fallback."""
    try:
        model = models.for_role("critic", cfg)
        review = await by_deadline(
            run_critic(critic, model, task, cfg, rewrite=rewrite), task, cfg, leave=leave
        )
    except Exception as exc:
        failed = [degraded(critic.aspect, exc)]
        if critic.fallback is None:
            return CriticRun(None, degraded=failed)
        try:
            return CriticRun(critic.fallback(task), degraded=failed)
        except Exception as broken:  # a fallback from user code must not lose the turn
            return CriticRun(None, degraded=[*failed, degraded(critic.aspect, broken)])
    return CriticRun(review.critique, review.reply)


async def rewrite(
    models: Models,
    cfg: RefinerConfig,
    state: TurnState,
    reply: str,
    critiques: Sequence[Critique],
    precedence: Sequence[str],
    on_reply_delta: Callable[[str], None] | None = None,
) -> EditorOutput:
    """The editor's rewrite of `reply` applying `critiques`, within the turn's deadline: the
    one rewrite of every strategy (the merge, sequential's and self-refine's)."""
    return await by_deadline(
        merge_critiques(
            models.for_role("editor", cfg),
            history=state["history"],
            reply=reply,
            critiques=critiques,
            knowledge=state["knowledge"],
            method=cfg.structured_output,
            precedence=precedence,
            max_chars=cfg.max_reply_chars,
            on_reply_delta=on_reply_delta,
        ),
        state,
        cfg,
    )


def merge_history(stored: list[dict[str, str]], incoming: list[dict[str, str]]) -> list[dict]:
    """Append the request's messages to a stored thread.

    Callers may send only the new messages, or the whole conversation again (as OpenAI clients
    do); a resent prefix is recognised and not duplicated. The messages of a turn that never
    completed (no reply could be made, or the process died mid-turn) are dropped: the thread
    holds completed turns only, so a retried request is not doubled.
    """
    replied = [i for i, m in enumerate(stored) if m["role"] == "assistant"]
    stored = stored[: replied[-1] + 1] if replied else []
    if stored and incoming[: len(stored)] == stored:
        return list(incoming)
    return stored + incoming


def make_load_context(config: RefinerConfig, retrievers: Sequence[BaseRetriever]) -> Node:
    async def load_context(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        """The turn's starting state; the persona is the request's inline facts plus the stored
        profile, facts and edit preferences relevant to this query (when a store is given); then
        the turn's evidence (`retrieve`). One step, not two: a graph step has a cost of its own,
        and nothing else could run between them."""
        started = time.time()  # the turn's deadline counts from here
        request = RefineRequest.model_validate(state["request"])
        incoming = [m.wire() for m in request.messages]
        history = merge_history(list(state.get("history") or []), incoming)
        cfg = settings(runtime, config)
        reads = asyncio.gather(
            persona_for_turn(
                runtime.store,
                cfg,
                user_id=request.user_id,
                query=last_user_message(history),
                inline=request.persona,
            ),
            stored_attributes(runtime.store, cfg, request.user_id),
        )
        try:
            (persona, problems), (attributes, unread) = await by_deadline(
                reads, {"started": started}, cfg
            )
        except DeadlineExceeded as exc:
            (persona, problems), (attributes, unread) = (request.persona, [str(exc)]), ({}, [])
        fresh = _fresh_turn(state, request, history, persona, [*problems, *unread])
        fresh["started"] = started
        # What the user's profile says wins over what this thread learned before.
        fresh["attributes"] = {**fresh["attributes"], **attributes}
        retrieving = time.perf_counter()
        evidence = await retrieve(fresh, cfg, retrievers)
        fresh["timings"] = {"reset": True, "retrieve": (time.perf_counter() - retrieving) * 1000}
        fresh["degraded"] = {"reset": [*fresh["degraded"]["reset"], *evidence.pop("degraded")]}
        return {**fresh, **evidence}

    return load_context


def keeps_memory(store: BaseStore | None, cfg: RefinerConfig, user_id: str) -> bool:
    return store is not None and cfg.memory and remembers(user_id)


def persona_store(store: BaseStore | None, cfg: RefinerConfig, user_id: str) -> PersonaStore | None:
    """The run's persona store, when it keeps memory for this user."""
    if store is None or not keeps_memory(store, cfg, user_id):
        return None
    return PersonaStore(store, embeddings_for(store, cfg))


async def stored_attributes(
    store: BaseStore | None, cfg: RefinerConfig, user_id: str
) -> tuple[dict[str, str], list[str]]:
    """The PENGUIN attributes of the user's stored profile (for the safety agent), and what went
    wrong (for `degraded`)."""
    try:
        personas = persona_store(store, cfg, user_id)
        profile = await personas.get_profile(user_id) if personas else None
    except Exception as exc:
        return {}, [f"stored attributes could not be read: {type(exc).__name__}: {exc}"]
    return ({n: a.value for n, a in profile.attributes.items()} if profile else {}), []


def threaded(config: RunnableConfig) -> bool:
    """Whether the run has a thread (a checkpointer keeps its state between turns)."""
    return bool((config.get("configurable") or {}).get("thread_id"))


async def read_reply(
    models: Models,
    cfg: RefinerConfig,
    *,
    attribute: str,
    question: str,
    answer: str,
    started: float,
) -> str | None:
    """The attribute's value in the user's answer to the safety agent's question, or None when
    declined; the same reading in a thread (on resume) and outside one. Past the deadline the
    answer is kept as given, as when the model fails."""
    try:
        model = models.for_role("critic", cfg)
    except Exception:
        model = None
    reading = read_answer(
        model, attribute=attribute, question=question, answer=answer, method=cfg.structured_output
    )
    try:
        return await by_deadline(reading, {"started": started}, cfg)
    except DeadlineExceeded:
        return answer.strip()


async def conversation_answers(
    state: TurnState, store: BaseStore | None, models: Models, cfg: RefinerConfig
) -> dict[str, Any]:
    """Outside a thread: the safety agent's earlier questions in the conversation the client
    resends, and their answers, so that the cap and declined answers hold as in a thread.

    Nothing is checkpointed then, but for a user with a persona store the questions were recorded
    when asked (`ask_user`): each one found among the assistant's messages counts as asked, and
    the user's next message is its answer. An answer is read once (the reading is kept with the
    question, so the conversation resent next turn costs no model call); it makes the attribute
    known (kept in the profile too) or declined. {} when there is nothing to do.
    """
    history, user_id = state["history"], state["user_id"]
    personas = persona_store(store, cfg, user_id)
    said = [i for i, m in enumerate(history) if m["role"] == "assistant"]
    if personas is None or not said:
        return {}
    try:
        recorded = await personas.asked_questions(user_id, [history[i]["content"] for i in said])
    except Exception as exc:
        problem = f"asked questions could not be read: {type(exc).__name__}: {exc}"
        return {"degraded": [degraded("memory", problem)]}
    attributes = dict(state.get("attributes") or {})
    declined = list(state.get("declined") or [])
    count, asked, problems = 0, [], []
    for i in said:
        question = recorded.get(question_key(history[i]["content"]))
        if question is None:
            continue
        count += 1
        if i + 1 == len(history) or history[i + 1]["role"] != "user":
            continue  # not answered (yet)
        answer = history[i + 1]["content"]
        if question.answer == answer:  # read in an earlier turn; the profile may know better
            value = question.value
            if value is not None:
                attributes.setdefault(question.attribute, value)
        else:
            value = await read_reply(
                models,
                cfg,
                attribute=question.attribute,
                question=question.question,
                answer=answer,
                started=state["started"],
            )
            if value is not None:
                attributes[question.attribute] = value
            try:
                read = question.model_copy(update={"answer": answer, "value": value})
                await personas.answer_question(user_id, read)
            except Exception as exc:
                problems.append(f"the answer could not be stored: {type(exc).__name__}: {exc}")
        if value is None and question.attribute not in declined:
            declined.append(question.attribute)
        if i + 2 == len(history):  # answered in this request: one of the turn's questions
            record = SafetyQuestion(
                attribute=question.attribute,
                question=question.question,
                answer=answer,
                declined=value is None,
            )
            asked.append(record.model_dump())
    if not count:
        return {}
    return {
        "attributes": attributes,
        "declined": declined,
        "questions_asked": count,
        "asked": asked,
        "degraded": [degraded("memory", problem) for problem in problems],
    }


def _fresh_turn(
    state: TurnState,
    request: RefineRequest,
    history: list[dict[str, str]],
    persona: list[str],
    problems: list[str],
) -> dict[str, Any]:
    return {
        "history": history,
        "user_id": request.user_id,
        "persona": persona,
        "knowledge": request.knowledge,
        "citations": [],
        "draft": request.draft_text or "",
        "drafted": request.draft is None,
        "tool_calls": _handed_in_tool_calls(request),
        "reply": request.draft_text or "",  # a handed-in draft may skip the draft step
        "streamed": False,
        "ask": None,
        "blocked": False,
        "gate": None,
        "asked": {"reset": []},
        "attributes": dict(state.get("attributes") or {}),
        "declined": list(state.get("declined") or []),
        "questions_asked": state.get("questions_asked") or 0,
        "plan": Plan(source="none").model_dump(),
        "round": 1,
        "pending": [],
        "critiques": {"reset": []},
        "changes": {"reset": []},
        "overridden": {"reset": []},
        "degraded": {"reset": [degraded("memory", problem) for problem in problems]},
        "timings": {"reset": True},
    }


def _handed_in_tool_calls(request: RefineRequest) -> list[dict[str, Any]] | None:
    draft = request.draft
    calls = getattr(draft, "tool_calls", None)
    return [c.model_dump() for c in calls] if calls else None


def tool_results(history: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(tool name, result) of the tool messages since the user's last message: this turn's."""
    users = [i for i, m in enumerate(history) if m["role"] == "user"]
    start = users[-1] + 1 if users else 0
    return [
        (m.get("name") or "tool", m["content"])
        for m in history[start:]
        if m["role"] == "tool" and m["content"].strip()
    ]


def own_passages(state: TurnState) -> list[str]:
    """The passages without this turn's tool results (the last ones): the responding model
    reads those as the tool messages they are."""
    knowledge = state["knowledge"]
    return knowledge[: len(knowledge) - len(tool_results(state["history"]))]


async def retrieve(
    state: dict[str, Any], cfg: RefinerConfig, retrievers: Sequence[BaseRetriever]
) -> dict[str, Any]:
    """Evidence before the draft, so the draft, the critics and the editor share it: the
    request's passages, then the knowledge base's and the retrievers' for the query."""
    query = last_user_message(state["history"])
    try:
        passages, failures = await by_deadline(
            turn_evidence(cfg, retrievers, query=query, knowledge=state["knowledge"]),
            state,
            cfg,
        )
    except DeadlineExceeded as exc:
        passages, failures = request_passages(state["knowledge"]), [str(exc)]
    # This turn's tool results are evidence too, cited with the tool's name as source.
    passages += [
        Passage(id=f"p{len(passages) + i}", text=text, source=name)
        for i, (name, text) in enumerate(tool_results(state["history"]), 1)
    ]
    return {
        "knowledge": [p.text for p in passages],
        "evidence": [p.model_dump() for p in passages],
        "degraded": [degraded("retrieve", failure) for failure in failures],
    }


def answers_to_read(
    state: TurnState, store: BaseStore | None, cfg: RefinerConfig, config: RunnableConfig
) -> bool:
    """Whether the draft step may find answers to the safety agent's earlier questions in the
    conversation (`conversation_answers`): outside a thread, for a user with memory, once the
    assistant has spoken."""
    return (
        not threaded(config)
        and keeps_memory(store, cfg, state["user_id"])
        and any(m["role"] == "assistant" for m in state["history"])
    )


def make_draft(models: Models, base: RefinerConfig) -> Node:
    async def draft(
        state: TurnState, runtime: Runtime[RefinerConfig], config: RunnableConfig
    ) -> dict[str, Any]:
        cfg = settings(runtime, base)
        learned: dict[str, Any] = {}
        if answers_to_read(state, runtime.store, cfg, config):
            # Here rather than in load_context, which has no model to read an answer with (in a
            # thread, the answers were read on resume, in `ask_user`).
            learned = await conversation_answers(state, runtime.store, models, cfg)
        if not state.get("drafted"):
            return {**learned, "reply": state["draft"]}
        attributes = learned.get("attributes", state.get("attributes") or {})
        persona = [*state["persona"], *attribute_facts(attributes)]
        if cfg.planner in ("router", "hybrid") and cfg.strategy in ("parallel", "sequential"):
            prefetch_route(cfg, state["history"], persona)  # embeds while the draft is written
        try:
            model = models.for_role("responder", cfg)
            request = state["request"]
            text, calls = await by_deadline(
                draft_turn(
                    model,
                    state["history"],
                    persona,
                    own_passages(state),
                    tools=request.get("tools"),
                    tool_choice=request.get("tool_choice"),
                    parallel_tool_calls=request.get("parallel_tool_calls"),
                    response_format=request.get("response_format"),
                ),
                state,
                cfg,
            )
        except Exception as exc:
            raise RefineError(f"no draft could be written: {exc}", step="draft", cause=exc) from exc
        if calls:  # a tool call: nothing to refine, it goes back as it is
            return {**learned, "draft": text, "reply": text, "tool_calls": calls}
        if not text:
            raise RefineError("the responding model returned an empty reply", step="draft")
        try:
            check_reply(text, cfg.max_reply_chars, "draft")
        except ReplyTooLong as exc:
            raise RefineError(str(exc), step="draft", cause=exc) from exc
        return {**learned, "draft": text, "reply": text}

    return draft


def make_plan(models: Models, config: RefinerConfig, critics: CriticSet) -> Node:
    async def plan(state: TurnState, runtime: Runtime[RefinerConfig]) -> dict[str, Any]:
        cfg = settings(runtime, config)
        aspects = critics.active(cfg.critics)
        if cfg.planner == "all":
            reasons = {a: "planner=all checks every configured aspect" for a in aspects}
            return {"plan": Plan(aspects=aspects, reasons=reasons, source="all").model_dump()}
        route = None
        loading: list[dict[str, str]] = []
        if cfg.planner in ("router", "hybrid"):
            persona = [*state["persona"], *attribute_facts(state.get("attributes") or {})]
            try:
                # A turn with a deadline does not wait for the router to load.
                ready = await router_ready(cfg, None if cfg.deadline_s is None else 0)
                if ready:
                    turn_critics = [critics[a] for a in aspects]
                    route = await by_deadline(
                        route_turn(cfg, state, persona, turn_critics), state, cfg
                    )
            except Exception as exc:
                reasons = {a: "router failed; checking every aspect" for a in aspects}
                fallback = Plan(aspects=aspects, reasons=reasons, source="all")
                return {"plan": fallback.model_dump(), "degraded": [degraded("plan", exc)]}
            if route is None:
                instead = "every aspect" if cfg.planner == "router" else "the LLM planner"
                loading = [degraded("plan", f"the router is still loading: {instead} instead")]
                if cfg.planner == "router":
                    reasons = {a: "router still loading; checking every aspect" for a in aspects}
                    fallback = Plan(aspects=aspects, reasons=reasons, source="all")
                    return {"plan": fallback.model_dump(), "degraded": loading}
            elif cfg.planner == "router" or route.confidence >= cfg.hybrid_threshold:
                return {"plan": plan_from_route(route, aspects).model_dump()}
        try:
            chosen = await by_deadline(
                plan_critics(
                    models.for_role("planner", cfg),
                    aspects=aspects,
                    history=state["history"],
                    reply=state["reply"],
                    persona_count=len(state["persona"]),
                    knowledge_count=len(state["knowledge"]),
                    method=cfg.structured_output,
                    critics=critics,
                ),
                state,
                cfg,
            )
        except Exception as exc:
            if route is not None:  # hybrid: the router's decision stands
                plan = plan_from_route(route, aspects)
                return {"plan": plan.model_dump(), "degraded": [degraded("plan", exc)]}
            # Without a plan, checking everything is the safe choice.
            reasons = {a: "planner failed; checking every aspect" for a in aspects}
            fallback = Plan(aspects=aspects, reasons=reasons, source="all")
            return {"plan": fallback.model_dump(), "degraded": [*loading, degraded("plan", exc)]}
        if route is not None:
            await keep_decision(runtime.store, cfg, route, chosen)
            chosen = hybrid_plan(chosen, route, aspects)
        return {"plan": chosen.model_dump(), "degraded": loading}

    return plan


def turn_data(state: TurnState) -> list[tuple[str, str]]:
    """Everything in the turn that is data, not the user's own words, by slot."""
    data = [("persona", fact) for fact in state.get("persona") or []]
    data += [("knowledge", passage) for passage in state.get("knowledge") or []]
    data += [("evidence", p["text"]) for p in state.get("evidence") or [] if p.get("text")]
    for message in state.get("history") or []:
        if message["role"] in ("tool", "assistant") and isinstance(message.get("content"), str):
            data.append((f"{message['role']} message", message["content"]))
    return data


async def finalize(state: TurnState) -> dict[str, Any]:
    """The reply joins the thread's history; the turn is complete.

    A reply that was not streamed while written goes to the stream whole.
    """
    reply = state.get("reply") or state["draft"]
    kept: dict[str, Any] = {}
    wanted = (state.get("request") or {}).get("response_format")
    if reply != state["draft"] and wants_json(wanted):
        # A JSON reply is never broken by refinement: the draft stands unless the rewrite fits.
        problem = format_problem(reply, wanted)
        if problem is not None and format_problem(state["draft"], wanted) is None:
            reason = (
                f"the refined reply {problem}; the draft, which meets the response_format, was kept"
            )
            reply, kept = state["draft"], {"degraded": [degraded("response_format", reason)]}
    if reply != state["draft"]:
        slot = echoed_instruction(
            reply,
            draft=state["draft"],
            user_message=last_user_message(state["history"]),
            data=turn_data(state),
        )
        if slot is not None:
            reason = f"the refined reply carried out an instruction found in the {slot}"
            kept = {
                "degraded": [*kept.get("degraded", []), degraded("output_check", reason)],
                "changes": {"reset": []},  # none of the edits is in the reply sent
            }
            reply = state["draft"]
    streamed = bool(state.get("streamed"))
    if streamed and reply != (state.get("reply") or state["draft"]):
        get_stream_writer()({"reset": True})  # what was streamed is not the reply after all
        streamed = False
    if not streamed:
        get_stream_writer()({"token": reply})
    said: dict[str, Any] = {"role": "assistant", "content": reply}
    if state.get("tool_calls"):
        said["tool_calls"] = state["tool_calls"]
    return {"reply": reply, "history": [*state["history"], said], **kept}


def finalized(update: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """A node's `update` and `finalize`'s update after it (`final`) as one update: the
    reply and history are finalize's, its degradations are added to the node's, and when it
    resets `changes` (the reply sent is the draft) the node's changes go too."""
    both = {**update, **final}
    if "degraded" in update and "degraded" in final:
        both["degraded"] = [*update["degraded"], *final["degraded"]]
    return both
