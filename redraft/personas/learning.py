"""Learning from turns (extraction, then reconciliation with similar stored facts) and from
users' edits (CIPHER). Both run off the reply's path, one job at a time per user."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables.config import var_child_runnable_config

from redraft.agents.edit_learner import infer_preference
from redraft.agents.memory import STORED_PREFIX, MemoryOutput, extract_memory
from redraft.agents.prompting import last_user_message
from redraft.llm.calls import UsageTracker
from redraft.personas.model import STYLE_FIELDS, EditPreference, Fact, Style, normalise, now
from redraft.personas.store import PersonaStore, style_item
from redraft.state import Usage

log = structlog.get_logger("redraft")

EXCHANGE_TURNS = 4
"""User/assistant messages the memory agent sees: the latest exchange and the one before."""
SIMILAR_FACTS = 8
"""Stored facts, the most similar to the exchange, that new facts are reconciled with."""


@dataclass
class Reconciliation:
    """The writes one extraction leads to, and what was decided."""

    writes: list[Fact] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    superseded: int = 0
    ignored: int = 0
    usage: Usage = field(default_factory=Usage)
    """LLM calls and tokens the update cost."""


@contextlib.contextmanager
def counted() -> Iterator[Usage]:
    """Count the LLM calls made inside (memory work runs outside any graph run, so the
    turn's usage tracker does not see it)."""
    tracker = UsageTracker()
    token = var_child_runnable_config.set({"callbacks": [tracker]})
    try:
        yield tracker.usage
    finally:
        var_child_runnable_config.reset(token)


def reconcile(output: MemoryOutput, stored: Sequence[Fact]) -> Reconciliation:
    """Apply the memory agent's decisions to the stored facts it was shown (ids m1, m2, ...).

    A superseded fact is kept, marked with when and by which fact; an update rewrites the fact in
    place. A decision naming an unknown or already-used target counts as an add; an add that
    repeats a stored fact is ignored.
    """
    by_id = {f"{STORED_PREFIX}{i}": fact for i, fact in enumerate(stored, 1)}
    known = {normalise(f.text) for f in stored}
    result = Reconciliation()
    for decision in output.facts:
        text = decision.text.strip()
        target = by_id.pop(decision.target or "", None)
        if decision.action == "ignore" or not text:
            result.ignored += 1
            continue
        if normalise(text) in known and (
            target is None or normalise(target.text) == normalise(text)
        ):
            result.ignored += 1
            continue
        known.add(normalise(text))
        source = decision.source
        if decision.action == "update" and target is not None:
            result.writes.append(
                target.model_copy(
                    update={
                        "text": text,
                        "source": source,
                        "confidence": max(target.confidence, decision.confidence),
                        "updated_at": now(),
                    }
                )
            )
            result.updated += 1
            continue
        fact = Fact(text=text, source=source, confidence=decision.confidence)
        if decision.action == "supersede" and target is not None:
            fact.supersedes = target.id
            result.writes.append(
                target.model_copy(
                    update={
                        "status": "superseded",
                        "superseded_at": fact.created_at,
                        "superseded_by": fact.id,
                        "updated_at": fact.created_at,
                    }
                )
            )
            result.superseded += 1
        else:
            result.added += 1
        result.writes.append(fact)
    return result


def merged_style(current: Style, proposed: Style | None) -> Style | None:
    """The style with the proposed fields set, or None when nothing changes."""
    if proposed is None:
        return None
    changes = {
        name: value.strip()
        for name in STYLE_FIELDS
        if (value := getattr(proposed, name)) and value.strip() != (getattr(current, name) or "")
    }
    return current.model_copy(update=changes) if changes else None


async def learn_from_turn(
    personas: PersonaStore,
    model: BaseChatModel,
    *,
    user_id: str,
    history: Sequence[dict[str, str]],
    method: str,
) -> Reconciliation:
    """One extraction call on the latest exchange, reconciled with the most similar stored
    facts and written in one batch (readers see the store before or after, never halfway)."""
    exchange = [m for m in history if m["role"] in ("user", "assistant")][-EXCHANGE_TURNS:]
    query = last_user_message(exchange)
    similar = await personas.search_facts(user_id, query, SIMILAR_FACTS)
    stored = [fact for fact, _ in similar]
    profile = await personas.get_profile(user_id)
    with counted() as usage:
        output = await extract_memory(
            model, exchange=exchange, stored=stored, style=profile.style, method=method
        )
    result = reconcile(output, stored)
    result.usage = usage
    style = merged_style(profile.style, output.style)
    if result.writes or style is not None:
        # One batch: a turn reading meanwhile sees all of this exchange's changes or none.
        await personas.write(
            user_id,
            facts=result.writes,
            profile=style_item(style) if style is not None else None,
        )
    log.info(
        "memory.learned",
        user_id=user_id,
        added=result.added,
        updated=result.updated,
        superseded=result.superseded,
        ignored=result.ignored,
        style=style is not None,
        llm_calls=usage.llm_calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    return result


async def learn_from_edit(
    personas: PersonaStore,
    model: BaseChatModel,
    *,
    user_id: str,
    context: str,
    reply: str,
    edited_reply: str,
    method: str,
) -> EditPreference | None:
    """CIPHER: infer the preference the edit expresses; keep it with the context's embedding."""
    preference = await infer_preference(
        model, context=context, reply=reply, edited_reply=edited_reply, method=method
    )
    if not preference:
        log.info("memory.edit_without_preference", user_id=user_id)
        return None
    edit = EditPreference(
        preference=preference, context=context, reply=reply, edited_reply=edited_reply
    )
    await personas.add_edit(user_id, edit)
    log.info("memory.edit_learned", user_id=user_id, edit_id=edit.id)
    return edit
