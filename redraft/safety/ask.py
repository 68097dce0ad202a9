"""Asking the user for missing context (RAISE): a LangGraph interrupt, resumed with the answer.

With a thread (a checkpointer), the graph pauses with the question; the user's next message (or
`Refiner.aresume`) resumes it, the answer is kept as the attribute (or the attribute is marked
declined), and the original message is answered again with that context. Without a thread
nothing can pause: the question is the reply, and the caller sends the answer in the
conversation; for a user with persona memory the question is recorded, so that the next turn
finds it, and its answer, in the conversation the client resends (`nodes.conversation_answers`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import interrupt

from redraft.config import RefinerConfig
from redraft.graphs.nodes import Node, degraded, persona_store, read_reply, settings, threaded
from redraft.llm.calls import Models
from redraft.personas.store import PersonaStore
from redraft.safety.critic import ASPECT, block_reply
from redraft.state import Critique, SafetyQuestion, TurnState

INTERRUPT_TYPE = "safety_question"


def safety_outcome(critiques: Iterable[Critique], cfg: RefinerConfig) -> dict[str, Any] | None:
    """What the safety verdicts decide before any rewrite, in every strategy: a crisis
    (`block`) replaces the reply with the supportive message and crisis resources whatever the
    other critics said; a question (`ask`) goes to the user first. None when neither applies."""
    critiques = list(critiques)
    # Only the safety agent can declare a crisis; a stray `block` from another critic is not one.
    blocking = next((c for c in critiques if c.verdict == "block" and c.aspect == ASPECT), None)
    if blocking is not None:
        return {"reply": block_reply(blocking, cfg), "blocked": True}
    asking = next((c.safety for c in critiques if c.verdict == "ask" and c.safety), None)
    if asking is not None:
        question = asking.question
        # The question is the reply while the turn waits (a paused thread's state shows it);
        # the answer makes the draft be written again.
        return {
            "ask": {"attribute": asking.ask_attribute, "question": question},
            "reply": question,
        }
    return None


def safety_changed(state: TurnState) -> bool:
    """Whether the safety agent asked for changes this turn (a revision, its fallback caution,
    a crisis message or a question): such changes are never undone by the regression gate."""
    return any(
        c.get("aspect") == ASPECT and c.get("verdict") != "pass"
        for c in state.get("critiques") or []
    )


def answer_text(resume: Any) -> str:
    """The user's answer from a resume value: a string, or `{"answer": ...}`."""
    if isinstance(resume, dict):
        resume = resume.get("answer", "")
    return resume if isinstance(resume, str) else ""


def make_ask_user(models: Models, base: RefinerConfig) -> Node:
    async def ask_user(
        state: TurnState, runtime: Runtime[RefinerConfig], config: RunnableConfig
    ) -> dict[str, Any]:
        cfg = settings(runtime, base)
        ask = state["ask"]
        assert ask is not None, "the graph routes here only when the safety critic asked"
        asked = (state.get("questions_asked") or 0) + 1
        if not threaded(config):
            # Nothing is checkpointed: the question is kept with the user's persona instead.
            problems = await remember(
                runtime.store,
                cfg,
                state["user_id"],
                lambda personas: personas.record_question(
                    state["user_id"], ask["attribute"], ask["question"]
                ),
                "the question could not be recorded",
            )
            return {
                "reply": ask["question"],
                "questions_asked": asked,
                "degraded": [degraded("memory", problem) for problem in problems],
            }
        # Everything above runs again on resume, so it must stay free of side effects.
        answer = answer_text(interrupt({"type": INTERRUPT_TYPE, **ask}))
        # The answer is the user's next message: the resumed turn has a deadline of its own.
        started = time.time()
        value = await read_reply(
            models,
            cfg,
            attribute=ask["attribute"],
            question=ask["question"],
            answer=answer,
            started=started,
        )
        attributes = dict(state.get("attributes") or {})
        declined = list(state.get("declined") or [])
        problems = []
        if value is None:
            declined.append(ask["attribute"])
        else:
            attributes[ask["attribute"]] = value
            problems = await store_attribute(
                runtime.store, cfg, state["user_id"], ask["attribute"], value
            )
        record = SafetyQuestion(**ask, answer=answer, declined=value is None)
        history = [
            *state["history"],
            {"role": "assistant", "content": ask["question"]},
            {"role": "user", "content": answer or "(no answer)"},
        ]
        return {
            "started": started,
            "history": history,
            "attributes": attributes,
            "declined": declined,
            "questions_asked": asked,
            "asked": [record.model_dump()],
            "ask": None,
            "round": 1,
            "pending": [],
            "critiques": {"reset": []},
            "changes": {"reset": []},
            "degraded": [degraded("memory", problem) for problem in problems],
            # The resumed run reports its own timings, as it does its own usage and total.
            "timings": {"reset": True},
        }

    return ask_user


async def store_attribute(
    store: BaseStore | None, cfg: RefinerConfig, user_id: str, name: str, value: str
) -> list[str]:
    """Keep an answered attribute in the user's profile too, so that no other conversation asks
    it again; returns what went wrong (the thread keeps the answer either way)."""
    return await remember(
        store,
        cfg,
        user_id,
        lambda personas: personas.set_attribute(user_id, name, value, source="stated"),
        "the answer could not be stored",
    )


async def remember(
    store: BaseStore | None,
    cfg: RefinerConfig,
    user_id: str,
    write: Callable[[PersonaStore], Awaitable[Any]],
    failure: str,
) -> list[str]:
    """Write to the user's persona store, when the turn has one; returns what went wrong, for
    `degraded`: the turn goes on without it."""
    try:
        personas = persona_store(store, cfg, user_id)
        if personas is not None:
            await write(personas)
    except Exception as exc:
        return [f"{failure}: {type(exc).__name__}: {exc}"]
    return []


def after_question(state: TurnState) -> str:
    """Answered: write the reply again with what was learned. Unthreaded: the question stands."""
    return "finalize" if state.get("ask") else "draft"
