"""The embedding router: accuracy on PENGUIN and on the project's routing sets, latency on one
core, load time, what the same decisions cost through the LLM planner, and learning from a real
LLM planner.

    python -m benchmarks.routing [--penguin ../shared/data/penguin]   # all but learning
    python -m benchmarks.routing --only labelled|penguin|learning

- PENGUIN (`queries.jsonl`, 7,000 sensitive queries; a test set, never trained or tuned on):
  sensitive recall and domain top-1 / top-2, for the query alone and with the user's profile
  given as persona facts ("Age: 25-34 years", ...; the profile's own domain and scenario are not
  given); the recall other `SENSITIVE_PLAIN_AT` values would give, next to the labelled set's
  false-sensitive rates with them (the trade-off table). Confusion matrices go to
  `benchmarks/plots/routing/`.
- Labelled set (`benchmarks/data/routing_labelled_{dev,heldout,heldout2,heldout3,heldout4}.jsonl`):
  issue 17's figures.
- Routing set (`benchmarks/data/routing_set.jsonl`, written by the project): per-aspect
  precision and recall, false-sensitive rates, domain accuracy.
- Latency per decision after warm-up, pinned to one CPU core: cold (every text of the case
  embedded) and steady (only the new user message embedded, as in a conversation whose persona
  facts and earlier turns were embedded on earlier turns).
- LLM planner cost for the same routing-set decisions through FakeProvider (calls, tokens as
  FakeProvider counts them: whitespace-separated words; the round trip over local HTTP is a lower
  bound, a real model adds its generation time).
- Learning (`--only learning`): a consistent planner (FakeProvider scripted with the labels) and
  a real LLM planner (the environment's OpenAI-compatible server; its answers are cached, so a
  rerun on the same turns needs no server) decide training and held-out turns; the router learns
  from the training decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redraft import embeddings as shared_cache
from redraft.agents.planner import plan_critics
from redraft.config import RefinerConfig
from redraft.llm.calls import make_chat_model
from redraft.routing import Router, get_router
from redraft.routing import router as router_module
from redraft.routing.router import ASPECTS
from redraft.state import DOMAINS
from redraft.testing import FakeProvider

HERE = Path(__file__).parent
ROUTING_SET = HERE / "data" / "routing_set.jsonl"
LABELLED = {
    split: HERE / "data" / f"routing_labelled_{split}.jsonl"
    for split in ("dev", "heldout", "heldout2", "heldout3", "heldout4")
}
RESULTS = HERE / "results" / "routing.json"
PLANNER_CACHE = HERE / "results" / "routing_learning_planner.jsonl"
LEARNING_TURNS = HERE / "data" / "routing_learning_turns.json"
PLOTS = HERE / "plots" / "routing"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(at(0.99), 2),
        "n": len(values),
    }


def route_case(router: Router, case: dict[str, Any]):
    return router.route(
        case["messages"],
        persona=case.get("persona", []),
        knowledge=case.get("knowledge", []),
        draft=case.get("draft"),
    )


# ── PENGUIN ─────────────────────────────────────────────────────────────────────────────


PLAIN_AT_GRID = (0.4, 0.5, 0.65, 0.75, 0.85)
"""What-if values of the router's `SENSITIVE_PLAIN_AT`: the trade-off table, not a tuning."""


def penguin(router: Router, directory: Path, with_profile: bool) -> dict[str, Any]:
    """Sensitive recall and domains on PENGUIN; `recall_if_plain_at`: the recall the router
    would have with another `SENSITIVE_PLAIN_AT` (a query with no cue of its own counts at that
    probability; earlier turns play no part on these one-message turns)."""
    profiles = {p["profile_id"]: p for p in read_jsonl(directory / "profiles.jsonl")}
    queries = read_jsonl(directory / "queries.jsonl")
    confusion = {d: Counter() for d in DOMAINS}
    sensitive = top1 = top2 = 0
    if_plain_at = Counter()
    for row in queries:
        persona = []
        if with_profile:
            attributes = profiles[row["profile_id"]]["attributes"]
            persona = [f"{name}: {value}" for name, value in attributes.items()]
        route = router.route(
            [{"role": "user", "content": row["query"]}], persona=persona, draft=None
        )
        ranked = list(route.domain_scores)
        sensitive += route.sensitive
        p = route.features["sensitive"]
        own, why = router_module.own_sensitivity(
            row["query"], p, router_module.vulnerability(persona)
        )
        for plain_at in PLAIN_AT_GRID:
            if why.startswith("no words"):  # no cue: the classifier alone decides
                if_plain_at[plain_at] += p >= plain_at
            else:
                if_plain_at[plain_at] += own >= router_module.SENSITIVE_AT
        top1 += ranked[0] == row["domain"]
        top2 += row["domain"] in ranked[:2]
        confusion[row["domain"]][ranked[0]] += 1
    n = len(queries)
    return {
        "queries": n,
        "sensitive_recall": round(sensitive / n, 4),
        "recall_if_plain_at": {str(t): round(if_plain_at[t] / n, 4) for t in PLAIN_AT_GRID},
        "domain_top1": round(top1 / n, 4),
        "domain_top2": round(top2 / n, 4),
        "confusion": {d: [confusion[d][p] for p in DOMAINS] for d in DOMAINS},
    }


def false_sensitive_if_plain_at(router: Router) -> dict[str, dict[str, float | None]]:
    """The other side of `recall_if_plain_at`: the labelled set's false-sensitive rates with
    each what-if `SENSITIVE_PLAIN_AT` (whole dialogues, as the router routes them)."""
    kept = router_module.SENSITIVE_PLAIN_AT
    table: dict[str, dict[str, float | None]] = {}
    try:
        for plain_at in PLAIN_AT_GRID:
            router_module.SENSITIVE_PLAIN_AT = plain_at
            table[str(plain_at)] = {
                split: labelled(router, read_jsonl(path))["false_sensitive_rate"]
                for split, path in LABELLED.items()
            }
    finally:
        router_module.SENSITIVE_PLAIN_AT = kept
    return table


def plot_confusion(result: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [result["confusion"][d] for d in DOMAINS]
    shares = [[c / max(1, sum(row)) for c in row] for row in rows]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(DOMAINS)), DOMAINS, rotation=40, ha="right")
    ax.set_yticks(range(len(DOMAINS)), DOMAINS)
    ax.set_xlabel("predicted domain (top-1)")
    ax.set_ylabel("PENGUIN domain")
    for i, row in enumerate(rows):
        for j, count in enumerate(row):
            color = "white" if shares[i][j] > 0.5 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set_title(
        f"{title}\ntop-1 {result['domain_top1']:.3f} · top-2 {result['domain_top2']:.3f} · "
        f"sensitive recall {result['sensitive_recall']:.3f}"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the row")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ── routing set ─────────────────────────────────────────────────────────────────────────


def routing_set(router: Router, rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {a: Counter() for a in ASPECTS}
    by_category: dict[str, Counter] = {}
    false_sensitive: dict[str, Counter] = {"ordinary": Counter(), "all_not_sensitive": Counter()}
    domains = Counter()
    misses = []
    unclear = 0
    threshold = RefinerConfig().hybrid_threshold
    for row in rows:
        route = route_case(router, row["case"])
        unclear += route.confidence < threshold
        expected, chosen = set(row["expected"]["aspects"]), set(route.aspects)
        for aspect in ASPECTS:
            counts[aspect]["chosen"] += aspect in chosen
            counts[aspect]["expected"] += aspect in expected
            counts[aspect]["both"] += aspect in chosen and aspect in expected
        category = by_category.setdefault(row["category"], Counter())
        category["cases"] += 1
        category["exact"] += expected == chosen
        if not row["expected"]["sensitive"]:
            false_sensitive["all_not_sensitive"]["cases"] += 1
            false_sensitive["all_not_sensitive"]["flagged"] += route.sensitive
            if row["category"] == "ordinary_money_work_health":
                false_sensitive["ordinary"]["cases"] += 1
                false_sensitive["ordinary"]["flagged"] += route.sensitive
        elif route.sensitive:
            domains["cases"] += 1
            domains["top1"] += route.domain == row["expected"]["domain"]
        if expected != chosen:
            misses.append({"id": row["id"], "expected": sorted(expected), "chosen": sorted(chosen)})
    aspects = {}
    for aspect, c in counts.items():
        aspects[aspect] = {
            "precision": round(c["both"] / c["chosen"], 3) if c["chosen"] else None,
            "recall": round(c["both"] / c["expected"], 3) if c["expected"] else None,
            "expected": c["expected"],
            "chosen": c["chosen"],
        }
    sensitive_rows = [r for r in rows if r["expected"]["sensitive"]]
    return {
        "cases": len(rows),
        "aspects": aspects,
        "exact_match": round(sum(c["exact"] for c in by_category.values()) / len(rows), 3),
        "hybrid_hands_to_llm": {"threshold": threshold, "share": round(unclear / len(rows), 3)},
        "by_category": {k: dict(v) for k, v in sorted(by_category.items())},
        "sensitive_recall": round(domains["cases"] / len(sensitive_rows), 3),
        "domain_top1_of_flagged": round(domains["top1"] / max(1, domains["cases"]), 3),
        "false_sensitive": {
            k: {**v, "rate": round(v["flagged"] / v["cases"], 3)}
            for k, v in false_sensitive.items()
        },
        "misses": misses,
    }


# ── labelled set (issue 17's figures) ─────────────────────────────────────────────────


def labelled(router: Router, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of issue 17's goal table on one part of the labelled set: follow-ups given
    coherence, must-recall (share of the aspects the cases need that were chosen), must-not
    violations (share of cases with a must-not rule where a forbidden aspect was chosen),
    false-sensitive rate, sensitive recall and crisis cases caught."""
    totals = Counter()
    by_category: dict[str, Counter] = {}
    misses = []
    for row in rows:
        route = route_case(router, row)
        chosen, want = set(route.aspects), row["expected"]
        must, must_not = set(want["must"]), set(want["must_not"])
        category = by_category.setdefault(row["category"], Counter())
        category["cases"] += 1
        totals["must"] += len(must)
        totals["must_hit"] += len(must & chosen)
        violated = bool(must_not & chosen)
        totals["must_not_cases"] += bool(must_not)
        totals["violations"] += violated
        if want["followup"]:
            totals["followups"] += 1
            totals["followups_coherence"] += "coherence" in chosen
        if want["sensitive"]:
            totals["sensitive"] += 1
            totals["sensitive_flagged"] += route.sensitive
        else:
            totals["not_sensitive"] += 1
            totals["false_sensitive"] += route.sensitive
        if want["crisis"]:
            totals["crisis"] += 1
            totals["crisis_caught"] += "safety" in chosen
        ok = must <= chosen and not violated and route.sensitive == want["sensitive"]
        category["ok"] += ok
        if not ok:
            misses.append({"id": row["id"], "chosen": sorted(chosen), **want})

    def share(part: str, whole: str) -> float | None:
        return round(totals[part] / totals[whole], 3) if totals[whole] else None

    return {
        "cases": len(rows),
        "followups_to_coherence": f"{totals['followups_coherence']} of {totals['followups']}",
        "followups_to_coherence_share": share("followups_coherence", "followups"),
        "must_recall": share("must_hit", "must"),
        "must_not_violations": share("violations", "must_not_cases"),
        "false_sensitive_rate": share("false_sensitive", "not_sensitive"),
        "sensitive_recall": share("sensitive_flagged", "sensitive"),
        "crisis_caught": f"{totals['crisis_caught']} of {totals['crisis']}",
        "by_category": {k: f"{v['ok']} of {v['cases']}" for k, v in sorted(by_category.items())},
        "misses": misses,
    }


# ── latency and cost ────────────────────────────────────────────────────────────────────


def latency(router: Router, rows: list[dict[str, Any]], passes: int) -> dict[str, Any]:
    """ms per decision. cold: every text of the case is embedded (cache cleared first).
    steady: as in a conversation, persona facts and earlier turns were embedded on earlier
    turns; only the new user message is (a trailing space makes it a text not seen before)."""
    cases = [row.get("case", row) for row in rows]  # routing-set rows, or labelled-set rows
    for case in cases[:20]:  # warm-up
        route_case(router, case)
    cold, steady = [], []
    for _ in range(passes):
        for case in cases:
            router.clear_cache()
            with shared_cache._recent_lock:  # the process-wide cache of full-precision vectors
                shared_cache._recent.clear()
            started = time.perf_counter()
            route_case(router, case)
            cold.append((time.perf_counter() - started) * 1000)
            messages = [dict(m) for m in case["messages"]]
            messages[-1]["content"] += " "
            started = time.perf_counter()
            route_case(router, {**case, "messages": messages})
            steady.append((time.perf_counter() - started) * 1000)
    return {"cold": percentiles(cold), "steady": percentiles(steady)}


async def llm_planner_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    with FakeProvider() as provider:
        config = RefinerConfig(base_url=provider.base_url, api_key="k", max_retries=0)
        model = make_chat_model(config.model_for("planner"), config)
        times = []
        for row in rows:  # the answer is the expected plan, so completions have a real size
            steps = [
                {"aspect": a, "reason": f"{a} matters here"} for a in row["expected"]["aspects"]
            ]
            provider.script("planner", {"steps": steps})
            case = row["case"]
            started = time.perf_counter()
            await planner_plan(model, case, config.structured_output)
            times.append((time.perf_counter() - started) * 1000)
        calls = provider.calls_for("planner")
        prompt = [c.usage["prompt_tokens"] for c in calls if c.usage]
        completion = [c.usage["completion_tokens"] for c in calls if c.usage]
    return {
        "decisions": len(rows),
        "llm_calls": len(calls),
        "prompt_tokens": {"total": sum(prompt), "mean": round(statistics.mean(prompt), 1)},
        "completion_tokens": {
            "total": sum(completion),
            "mean": round(statistics.mean(completion), 1),
        },
        "round_trip_ms_local_http": percentiles(times),
    }


# ── learning from the LLM planner ─────────────────────────────────────────────────────


def pool(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Routing-set or labelled-set rows as turns with a key ("source:id") and a category."""
    return [
        {**row.get("case", row), "key": f"{source}:{row['id']}", "category": row["category"]}
        for row in rows
    ]


def sample(cases: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` cases spread over the categories (round-robin over shuffled categories), seeded."""
    import random

    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        by_category.setdefault(case["category"], []).append(case)
    queues = [rng.sample(group, len(group)) for _, group in sorted(by_category.items())]
    rng.shuffle(queues)
    chosen: list[dict[str, Any]] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in read_jsonl(path)} if path.exists() else {}


async def planner_plan(model: Any, case: dict[str, Any], method: str) -> Any:
    """The LLM planner's plan for one labelled turn, as `hybrid` would ask for it."""
    return await plan_critics(
        model,
        aspects=list(ASPECTS),
        history=case["messages"],
        reply=case.get("draft", ""),
        persona_count=len(case.get("persona", [])),
        knowledge_count=len(case.get("knowledge", [])),
        method=method,
    )


async def ask_planner(
    cases: list[dict[str, Any]], config: RefinerConfig, cache_path: Path
) -> dict[str, dict[str, Any]]:
    """The real LLM planner's choice on each case, one call at a time (the model server is
    serial and shared); every answer is appended to `cache_path` as it arrives, so a run that
    stops resumes where it stopped and a finished run is re-scored without the model (no
    server needed then)."""
    cache = read_cache(cache_path)
    missing = [case for case in cases if case["key"] not in cache]
    if not missing:
        return cache
    if not config.base_url:
        raise SystemExit(
            f"routing.py --only learning: {len(missing)} turn(s) have no cached planner answer "
            f"in {cache_path}; set OPENAI_BASE_URL to the LLM planner"
        )
    model_name = config.model_for("planner")
    model = make_chat_model(model_name, config)
    for number, case in enumerate(missing, start=1):
        started = time.perf_counter()
        try:
            chosen = await planner_plan(model, case, config.structured_output)
        except Exception as exc:  # reported; the case is asked again on the next run
            print(f"{case['key']}: the planner failed: {exc}", file=sys.stderr)
            continue
        row = {
            "key": case["key"],
            "aspects": chosen.aspects,
            "model": model_name,
            "seconds": round(time.perf_counter() - started, 1),
        }
        cache[case["key"]] = row
        with cache_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        print(f"{number}/{len(missing)} {case['key']}: {chosen.aspects} ({row['seconds']} s)")
    return cache


def learned_aspects(aspects: list[str]) -> list[str]:
    return sorted(set(aspects) - {"safety"})  # safety is not learned (recall first, rule-based)


def by_distance(route) -> float:
    """The hand-off confidence before learned aspects had their own: every score's distance
    from 0.5 (a learned score is the planner's chance of choosing the aspect)."""
    return min(abs(score - 0.5) * 2 for score in route.scores.values())


def agreement(
    router: Router, cases: list[dict[str, Any]], planner: dict[str, list[str]]
) -> dict[str, Any]:
    """How often the router chooses what the planner chose (safety aside): the whole set, and
    per aspect; the share of turns hybrid hands the planner (and the share the distance-from-0.5
    rule would have handed it); and how often hybrid's plan (the planner's on turns handed to
    it, the router's otherwise) is the planner's."""
    threshold = RefinerConfig().hybrid_threshold
    agree = handed = handed_by_distance = hybrid_agrees = 0
    per_aspect = Counter()
    for case in cases:
        route = route_case(router, case)
        mine, theirs = learned_aspects(route.aspects), learned_aspects(planner[case["key"]])
        agree += mine == theirs
        for aspect in ("factuality", "personalization", "coherence"):
            per_aspect[aspect] += (aspect in mine) == (aspect in theirs)
        asks = route.confidence < threshold
        handed += asks
        handed_by_distance += by_distance(route) < threshold
        hybrid_agrees += asks or mine == theirs
    n = len(cases)
    return {
        "agrees_with_planner": round(agree / n, 3),
        "agrees_per_aspect": {a: round(c / n, 3) for a, c in per_aspect.items()},
        "handed_to_planner": round(handed / n, 3),
        "handed_by_distance_rule": round(handed_by_distance / n, 3),
        "hybrid_plan_is_planners": round(hybrid_agrees / n, 3),
        "cases": n,
    }


async def learn_and_measure(
    router: Router,
    train: list[dict[str, Any]],
    test: list[dict[str, Any]],
    planner: dict[str, list[str]],
) -> dict[str, Any]:
    """Before, then after learning from the planner's decisions on every training turn, and on
    only those a hybrid router would have handed it (what hybrid with `learn_routing` keeps).
    The decisions go through `record_decision` and `stored_decisions` as in a hybrid turn, and
    are fitted with `fit` (what `redraft route train` and the server's retrain run)."""
    from langgraph.store.memory import InMemoryStore

    from redraft.routing.learning import MIN_PER_CLASS, fit, record_decision, stored_decisions

    config = RefinerConfig(learn_routing=True)
    threshold = config.hybrid_threshold
    result: dict[str, Any] = {
        "training_turns": len(train),
        "held_out_turns": len(test),
        "held_out_before": agreement(router, test, planner),
    }
    variants = {
        "every_training_turn": train,
        "only_turns_hybrid_hands_over": [
            c for c in train if route_case(router, c).confidence < threshold
        ],
    }
    result["hybrid_loop"] = await hybrid_loop(router, train, test, planner)
    for name, cases in variants.items():
        store = InMemoryStore()
        for case in cases:
            route = route_case(router, case)
            await record_decision(store, config, route.features, planner[case["key"]])
        decisions, _ = await stored_decisions(store, config)
        try:
            learned = fit(decisions)
        except ValueError as exc:
            result[name] = {"decisions": len(decisions), "not_fitted": str(exc)}
            continue
        result[name] = {
            "decisions": len(decisions),
            "learned": {
                a: "always" if m.negatives < MIN_PER_CLASS else "regression"
                for a, m in sorted(learned.aspects.items())
            },
            "held_out_after": agreement(router.with_learned(learned), test, planner),
        }
    return result


async def hybrid_loop(
    router: Router,
    train: list[dict[str, Any]],
    test: list[dict[str, Any]],
    planner: dict[str, list[str]],
    rounds: int = 4,
) -> list[dict[str, Any]]:
    """Hybrid as it runs with `learn_routing` and a periodic retrain: the training turns come
    in `rounds` batches (seeded order); in each, the turns the current router hands over are
    decided by the planner and kept, then the router is refitted on everything kept so far and
    measured on the held-out turns."""
    import random

    from langgraph.store.memory import InMemoryStore

    from redraft.routing.learning import fit, record_decision, stored_decisions

    config = RefinerConfig(learn_routing=True)
    order = random.Random(17).sample(train, len(train))
    store, current, measured = InMemoryStore(), router, []
    for number in range(rounds):
        batch = order[number * len(order) // rounds : (number + 1) * len(order) // rounds]
        handed = 0
        for case in batch:
            route = route_case(current, case)
            if route.confidence < config.hybrid_threshold:
                handed += 1
                await record_decision(store, config, route.features, planner[case["key"]])
        decisions, _ = await stored_decisions(store, config)
        if decisions:
            current = router.with_learned(fit(decisions))
        measured.append(
            {"round": number + 1, "turns": len(batch), "handed_in_round": handed}
            | {"decisions_kept": len(decisions)}
            | agreement(current, test, planner)
        )
    return measured


async def scripted_planner_learning(router: Router) -> dict[str, Any]:
    """A consistent planner: FakeProvider scripted with each turn's labels (the routing set's
    aspects, the labelled set's `must`; safety aside), asked over HTTP through `plan_critics`.
    Training: the labelled development part and the routing set's even ids; held out: both
    labelled held-out parts and the odd ids."""
    routing_rows = read_jsonl(ROUTING_SET)
    train = pool([r for r in routing_rows if r["id"] % 2 == 0], "routing") + pool(
        read_jsonl(LABELLED["dev"]), "dev"
    )
    test = pool([r for r in routing_rows if r["id"] % 2], "routing")
    for split in ("heldout", "heldout2"):
        test += pool(read_jsonl(LABELLED[split]), split)
    labels = {}
    sources = {"routing": routing_rows} | {s: read_jsonl(path) for s, path in LABELLED.items()}
    for source, rows in sources.items():
        for row in rows:
            wanted = row["expected"].get("aspects", row["expected"].get("must", []))
            labels[f"{source}:{row['id']}"] = learned_aspects(wanted)
    planner: dict[str, list[str]] = {}
    with FakeProvider() as provider:
        config = RefinerConfig(base_url=provider.base_url, api_key="k", max_retries=0)
        model = make_chat_model(config.model_for("planner"), config)
        for case in train + test:
            steps = [{"aspect": a, "reason": "needed"} for a in labels[case["key"]]]
            provider.script("planner", {"steps": steps})
            chosen = await planner_plan(model, case, config.structured_output)
            planner[case["key"]] = chosen.aspects
    return await learn_and_measure(router, train, test, planner)


async def llm_planner_learning(router: Router, args: argparse.Namespace) -> dict[str, Any]:
    """The router learns from a real LLM planner (the OpenAI-compatible server of the
    environment, e.g. a llama-cpp-python server with Qwen2.5-0.5B-Instruct), on the turns of
    `--turns` (the training and held-out keys; sampled once, spread over the categories, when
    the file does not exist: `--train-turns` from the training part, routing-set even ids and
    the labelled development part, and `--test-turns` from the held-out part, odd ids and the
    labelled held-out part 1)."""
    config = RefinerConfig(learn_routing=True)
    routing_rows = read_jsonl(ROUTING_SET)
    train_pool = pool([r for r in routing_rows if r["id"] % 2 == 0], "routing") + pool(
        read_jsonl(LABELLED["dev"]), "dev"
    )
    test_pool = pool([r for r in routing_rows if r["id"] % 2], "routing") + pool(
        read_jsonl(LABELLED["heldout"]), "heldout"
    )
    if args.turns.exists():
        keys = json.loads(args.turns.read_text())
        by_key = {c["key"]: c for c in train_pool + test_pool}
        train = [by_key[k] for k in keys["train"]]
        test = [by_key[k] for k in keys["held_out"]]
    else:
        train = sample(train_pool, args.train_turns, seed=17)
        test = sample(test_pool, args.test_turns, seed=18)
        keys = {"train": [c["key"] for c in train], "held_out": [c["key"] for c in test]}
        args.turns.write_text(json.dumps(keys, indent=1) + "\n")
    cache = await ask_planner(train + test, config, args.planner_cache)
    train = [c for c in train if c["key"] in cache]
    test = [c for c in test if c["key"] in cache]
    asked = [cache[c["key"]] for c in train + test]
    return {
        "planner_model": asked[0]["model"] if asked else config.model_for("planner"),
        "planner_seconds_per_call": percentiles([row["seconds"] for row in asked]),
        "planner_aspects_chosen": dict(Counter(a for row in asked for a in row["aspects"])),
        **await learn_and_measure(
            router, train, test, {key: row["aspects"] for key, row in cache.items()}
        ),
    }


async def learning_experiment(router: Router, args: argparse.Namespace) -> dict[str, Any]:
    """Learning from a consistent (scripted) planner and from a real LLM planner."""
    return {
        "scripted_planner": await scripted_planner_learning(router),
        "llm_planner": await llm_planner_learning(router, args),
    }


def quick(part: str, args: argparse.Namespace) -> int:
    """`--only labelled|penguin|learning`: one part, printed and written to
    results/routing_<part>.json."""
    if part == "penguin" and not (args.penguin / "queries.jsonl").exists():
        print(f"routing.py: no PENGUIN data in {args.penguin}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    router = get_router(RefinerConfig(embedding_threads=1))
    router.load()
    router = router.with_learned(None)  # the shipped router, not weights learned in this home
    passes = args.passes
    if part == "penguin":
        result = {}
        for name, with_profile in (("query_only", False), ("with_profile", True)):
            router.clear_cache()
            result[name] = penguin(router, args.penguin, with_profile)
            title = "PENGUIN domains, " + ("query + profile" if with_profile else "query only")
            plot_confusion(result[name], title, args.plots / f"confusion_{name}.png")
        result["false_sensitive_if_plain_at"] = false_sensitive_if_plain_at(router)
    elif part == "labelled":
        rows = {split: read_jsonl(path) for split, path in LABELLED.items()}
        result: dict[str, Any] = {s: labelled(router, r) for s, r in rows.items()}
        result["latency_ms"] = latency(router, [r for part in rows.values() for r in part], passes)
        result["load_average"] = os.getloadavg()
    else:
        result = asyncio.run(learning_experiment(router, args))
    path = RESULTS.with_name(f"routing_{part}.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--penguin", type=Path, default=Path("../shared/data/penguin"))
    parser.add_argument("--routing-set", type=Path, default=ROUTING_SET)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--plots", type=Path, default=PLOTS)
    parser.add_argument("--passes", type=int, default=3, help="latency passes over the set")
    parser.add_argument(
        "--train-turns", type=int, default=48, help="learning: training turns the planner decides"
    )
    parser.add_argument(
        "--test-turns", type=int, default=32, help="learning: held-out turns the planner decides"
    )
    parser.add_argument(
        "--planner-cache",
        type=Path,
        default=PLANNER_CACHE,
        help="learning: the real planner's answers, appended as they arrive and reused",
    )
    parser.add_argument(
        "--turns",
        type=Path,
        default=LEARNING_TURNS,
        help="learning: the training and held-out turns the real planner decides (sampled and "
        "written when missing)",
    )
    parser.add_argument(
        "--only",
        choices=["labelled", "penguin", "learning"],
        help="just the labelled-set figures and latency, PENGUIN's sensitive recall and domains, "
        "or the learning experiment",
    )
    args = parser.parse_args()
    if args.only:
        return quick(args.only, args)
    if not (args.penguin / "queries.jsonl").exists():
        print(f"routing.py: no PENGUIN data in {args.penguin}", file=sys.stderr)
        return 2

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    started = time.perf_counter()
    router = get_router(RefinerConfig(embedding_threads=1))
    load = router.load()
    load_total = time.perf_counter() - started
    rows = read_jsonl(args.routing_set)

    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus_used": 1},
        "load": {
            "model_s": round(load.model_s, 2),
            "examples_s": round(load.examples_s, 2),
            "examples": load.examples,
            "total_s": round(load_total, 2),
        },
        "load_average_before_latency": os.getloadavg(),
        "latency_ms": latency(router, rows, args.passes),
        "load_average_after_latency": os.getloadavg(),
        "routing_set": routing_set(router, rows),
        "llm_planner": asyncio.run(llm_planner_cost(rows)),
    }
    results["penguin"] = {}
    for name, with_profile in (("query_only", False), ("with_profile", True)):
        router.clear_cache()
        result = penguin(router, args.penguin, with_profile)
        results["penguin"][name] = result
        title = "PENGUIN domains, " + ("query + profile" if with_profile else "query only")
        plot_confusion(result, title, args.plots / f"confusion_{name}.png")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    summary = {k: v for k, v in results.items() if k != "routing_set"}
    for setting in summary["penguin"].values():
        setting.pop("confusion")
    print(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in results["routing_set"].items() if k != "misses"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
