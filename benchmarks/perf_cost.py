"""Tokens and calls per turn, by strategy, on a mixed workload — from the provider's accounting.

The workload is the router's labelled set (`benchmarks/data/routing_set.jsonl`: small talk,
knowledge questions with and without passages, persona-dependent requests, follow-ups,
sensitive requests, ordinary questions, turns without a draft), each case once per strategy.
The LLM planner is scripted to choose the case's labelled aspects; the router decides for
itself. Which critiques ask for a change is a fixed rule (FLAWED): the critic of the aspect a
case category was written to get wrong revises, every other critic passes — so the editor runs
only where there is something to fix. Self-refine revises the same cases. The provider answers
at once (tokens and calls do not depend on latency) and counts tokens as words.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.perf_common import ASPECTS, REPO, plan, refiner_config
from benchmarks.perf_provider import RemoteProvider
from redraft import Refiner

WORKLOAD = REPO / "benchmarks" / "data" / "routing_set.jsonl"
FLAWED = {
    "wrong_facts": "factuality",
    "followup_contradiction": "coherence",
    "persona_with_persona": "personalization",
    "sensitive": "safety",
}
"""Category → the aspect whose critic finds something to fix in that category's drafts."""
REWRITERS = {"editor", *(f"{a}_refiner" for a in ASPECTS)}
"""Agents whose call writes a new reply: the editor, and each step of the sequential strategy."""
GENERIC_DRAFT = "Here is what I would suggest, based on what you told me so far."
PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}


def load_workload(limit: int | None = None) -> list[dict[str, Any]]:
    """The cases, or `limit` of them spread evenly over the file (so every category is in)."""
    cases = [json.loads(line) for line in WORKLOAD.read_text().splitlines() if line.strip()]
    if limit is not None and limit < len(cases):
        step = len(cases) / limit
        cases = [cases[int(i * step)] for i in range(limit)]
    return cases


def script_case(provider: RemoteProvider, case: dict[str, Any]) -> None:
    """The answers for one case: the labelled plan, and a revise from the flawed aspect."""
    draft = case["case"].get("draft") or GENERIC_DRAFT
    flawed = FLAWED.get(case["category"])
    revise = {
        "verdict": "revise",
        "issues": [
            {"span": " ".join(draft.split()[:4]), "problem": "what is wrong", "fix": "the fix"}
        ],
        "confidence": 0.8,
        "evidence": [],
    }
    refined = f"{draft} (Refined to resolve the issue.)"
    provider.set_default("responder", GENERIC_DRAFT)
    provider.set_default("planner", plan(case["expected"]["aspects"]))
    for aspect in ASPECTS:
        verdict = revise if aspect == flawed else PASS
        provider.set_default(aspect, verdict)
        step_reply = refined if aspect == flawed else draft
        provider.set_default(f"{aspect}_refiner", {**verdict, "reply": step_reply})
    provider.set_default("self_refine", revise if flawed else PASS)
    change = {"aspect": flawed or "coherence", "change": "resolved the critique"}
    provider.set_default("editor", {"changes": [change], "reply": refined})


def combos(router: bool) -> list[tuple[str, str]]:
    """(strategy, planner) pairs measured; the router's only when its model is installed."""
    chosen = [("none", "llm"), ("self_refine", "llm"), ("sequential", "llm"), ("parallel", "llm")]
    if router:
        chosen += [("sequential", "router"), ("parallel", "router")]
    return chosen


async def measure(
    provider: RemoteProvider, home: Path, *, limit: int | None, router: bool
) -> dict[str, Any]:
    provider.configure(latency_s=0.0, tokens_per_s=None)
    cases = load_workload(limit)
    started = time.perf_counter()
    rows = []
    for strategy, planner in combos(router):
        config = refiner_config(provider, home, strategy=strategy, planner=planner)
        async with Refiner(config) as refiner:
            turns = [await one_case(provider, refiner, case) for case in cases]
        rows.append(combo_row(strategy, planner, turns))
    return {
        "workload": str(WORKLOAD.relative_to(REPO)),
        "cases": len(cases),
        "categories": dict(Counter(case["category"] for case in cases)),
        "flawed": FLAWED,
        "seconds": round(time.perf_counter() - started, 1),
        "strategies": rows,
    }


async def one_case(
    provider: RemoteProvider, refiner: Refiner, case: dict[str, Any]
) -> dict[str, Any]:
    script_case(provider, case)
    since = provider.count()
    result = await refiner.arefine(case["case"])
    calls = provider.calls(since)
    return {
        "agents": Counter(c.agent for c in calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "critics": len(result.plan.aspects),
        "changed": result.changed,
        "usage_calls": result.usage.llm_calls,
    }


def combo_row(strategy: str, planner: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(turns)
    agents: Counter[str] = Counter()
    for turn in turns:
        agents.update(turn["agents"])
    calls = [sum(t["agents"].values()) for t in turns]
    prompt = [t["prompt_tokens"] for t in turns]
    completion = [t["completion_tokens"] for t in turns]
    no_rewrite = sum(1 for t in turns if not REWRITERS & set(t["agents"]))
    chooses = strategy in ("parallel", "sequential")
    return {
        "strategy": strategy,
        "planner": planner if chooses else None,
        "turns": n,
        "calls_per_turn": round(sum(calls) / n, 2),
        "prompt_tokens_per_turn": round(sum(prompt) / n, 1),
        "completion_tokens_per_turn": round(sum(completion) / n, 1),
        "tokens_per_turn": round((sum(prompt) + sum(completion)) / n, 1),
        "calls_per_turn_by_agent": {a: round(c / n, 3) for a, c in sorted(agents.items())},
        "share_no_rewrite_call": round(no_rewrite / n, 3),
        "share_no_critic": round(sum(1 for t in turns if t["critics"] == 0) / n, 3)
        if chooses
        else None,
        "share_changed": round(sum(1 for t in turns if t["changed"]) / n, 3),
        "usage_matches_provider": all(t["usage_calls"] == sum(t["agents"].values()) for t in turns),
    }
