"""What a turn's agents see of the persona: the request's inline facts, the style profile, and the
stored facts and edit preferences nearest the query — never the whole persona — within a token
budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import structlog
from langgraph.store.base import BaseStore

from redraft.config import RefinerConfig
from redraft.embeddings import model_loaded, needs_local_model, wait_for_model
from redraft.log import text_fields
from redraft.personas.model import Profile, normalise
from redraft.personas.store import PersonaStore, Recall

log = structlog.get_logger("redraft")

ANONYMOUS_USER = "default"
"""The user id of requests that name none: they share it, so no memory is kept for it."""

EDIT_PREFIX = "Preference learned from the user's edits: "


def remembers(user_id: str) -> bool:
    return user_id != ANONYMOUS_USER


def approx_tokens(text: str) -> int:
    """About four characters per token: enough to keep prompts within a budget."""
    return len(text) // 4 + 1


@dataclass
class Line:
    text: str
    score: float
    pinned: bool
    """Inline facts and the profile come first; stored facts compete by relevance."""


def profile_lines(profile: Profile) -> list[str]:
    """Name and style; the PENGUIN attributes are for the safety agent, not these prompts."""
    lines = []
    if profile.name:
        lines.append(f"The user's name is {profile.name}.")
    if style := profile.style.describe():
        lines.append(f"How the user wants to be answered: {style}")
    return lines


async def persona_for_turn(
    store: BaseStore | None,
    config: RefinerConfig,
    *,
    user_id: str,
    query: str,
    inline: Sequence[str],
) -> tuple[list[str], list[str]]:
    """The persona lines for this turn's prompts, and what went wrong (for `degraded`).

    The request's inline facts always count; stored memory adds the profile and the `top_k`
    facts and `edit_k` edit preferences nearest the query. Memory that cannot be read degrades
    the turn to the inline facts.
    """
    lines = [Line(text, 1.0, True) for text in inline]
    problems: list[str] = []
    if store is not None and config.memory and remembers(user_id):
        try:
            personas = PersonaStore.on(store, config)
            # A turn with a deadline does not wait for the embedding model to load: until it
            # has, the turn gets the profile (no vectors needed) and no stored facts.
            if await wait_for_model(config, None if config.deadline_s is None else 0):
                recall = await personas.recall(
                    user_id, query, k_facts=config.memory_top_k, k_edits=config.memory_edit_k
                )
            else:
                recall = Recall(profile=await personas.get_profile(user_id), facts=[], edits=[])
                problems.append(
                    "persona memory recall skipped: the embedding model is still loading"
                )
        except Exception as exc:
            log.warning("memory.recall_failed", user_id=user_id, error=type(exc).__name__)
            problems.append(f"persona memory could not be read: {type(exc).__name__}: {exc}")
        else:
            lines += [Line(text, 1.0, True) for text in profile_lines(recall.profile)]
            lines += [Line(fact.text, score, False) for fact, score in recall.facts]
            lines += [Line(EDIT_PREFIX + e.preference, score, False) for e, score in recall.edits]
    unique = _unique(lines)
    chosen = await within_budget(unique, query, config)
    if len(chosen) < len(unique):
        log.warning(
            "persona.trimmed",
            user_id=user_id,
            kept=len(chosen),
            dropped=len(unique) - len(chosen),
            budget_tokens=config.memory_token_budget,
        )
    log.debug("persona.for_turn", user_id=user_id, **text_fields(persona=chosen))
    return chosen, problems


def _unique(lines: list[Line]) -> list[Line]:
    seen: set[str] = set()
    kept = []
    for line in lines:
        key = normalise(line.text.removeprefix(EDIT_PREFIX))
        if key and key not in seen:
            seen.add(key)
            kept.append(line)
    return kept


async def within_budget(lines: list[Line], query: str, config: RefinerConfig) -> list[str]:
    """Pinned lines first (in order), then the rest by relevance, until the budget is spent.

    When the pinned lines alone exceed it, they too are ranked by relevance to the query.
    """
    budget = config.memory_token_budget
    pinned = [line for line in lines if line.pinned]
    if sum(approx_tokens(line.text) for line in pinned) > budget:
        pinned = await _by_relevance(pinned, query, config)
    others = sorted((line for line in lines if not line.pinned), key=lambda x: -x.score)
    chosen: set[int] = set()
    spent = 0
    for line in [*pinned, *others]:
        cost = approx_tokens(line.text)
        if spent + cost <= budget:
            chosen.add(id(line))
            spent += cost
    ordered = [line for line in lines if line.pinned] + others
    return [line.text for line in ordered if id(line) in chosen]


async def _by_relevance(lines: list[Line], query: str, config: RefinerConfig) -> list[Line]:
    """The lines, most similar to the query first (in the given order if embeddings fail)."""
    from redraft.embeddings import get_embeddings

    if needs_local_model(config) and not model_loaded():
        return lines  # a turn does not load the model
    try:
        embeddings = get_embeddings(config)
        vectors = np.asarray(
            await embeddings.aembed_documents([query, *(line.text for line in lines)])
        )
    except Exception as exc:
        log.warning("persona.rank_failed", error=type(exc).__name__)
        return lines
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    scores = unit[1:] @ unit[0]
    return [lines[i] for i in np.argsort(-scores, kind="stable")]
