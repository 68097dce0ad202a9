"""The embedding router: accuracy on PENGUIN and on the project's routing set, latency on one
core, load time, and what the same decisions cost through the LLM planner.

    python -m benchmarks.routing [--penguin ../shared/data/penguin]

- PENGUIN (`queries.jsonl`, 7,000 sensitive queries; a test set, never trained on): sensitive
  recall and domain top-1 / top-2, for the query alone and with the user's profile given as
  persona facts ("Age: 25-34 years", ...; the profile's own domain and scenario are not given).
  Confusion matrices go to `benchmarks/plots/routing/`.
- Routing set (`benchmarks/data/routing_set.jsonl`, written by the project): per-aspect
  precision and recall, false-sensitive rates, domain accuracy.
- Latency per decision after warm-up, pinned to one CPU core, over the routing set: cold (every
  text of the case embedded) and steady (only the new user message embedded, as in a
  conversation whose persona facts and earlier turns were embedded on earlier turns).
- LLM planner cost for the same routing-set decisions through FakeProvider (calls, tokens as
  FakeProvider counts them: whitespace-separated words; the round trip over local HTTP is a lower
  bound, a real model adds its generation time).
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
from redraft.routing.router import ASPECTS
from redraft.state import DOMAINS
from redraft.testing import FakeProvider

HERE = Path(__file__).parent
ROUTING_SET = HERE / "data" / "routing_set.jsonl"
LABELLED = {
    split: HERE / "data" / f"routing_labelled_{split}.jsonl" for split in ("dev", "heldout")
}
RESULTS = HERE / "results" / "routing.json"
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


def penguin(router: Router, directory: Path, with_profile: bool) -> dict[str, Any]:
    profiles = {p["profile_id"]: p for p in read_jsonl(directory / "profiles.jsonl")}
    queries = read_jsonl(directory / "queries.jsonl")
    confusion = {d: Counter() for d in DOMAINS}
    sensitive = top1 = top2 = 0
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
        top1 += ranked[0] == row["domain"]
        top2 += row["domain"] in ranked[:2]
        confusion[row["domain"]][ranked[0]] += 1
    n = len(queries)
    return {
        "queries": n,
        "sensitive_recall": round(sensitive / n, 4),
        "domain_top1": round(top1 / n, 4),
        "domain_top2": round(top2 / n, 4),
        "confusion": {d: [confusion[d][p] for p in DOMAINS] for d in DOMAINS},
    }


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
            await plan_critics(
                model,
                aspects=list(ASPECTS),
                history=case["messages"],
                reply=case.get("draft", ""),
                persona_count=len(case.get("persona", [])),
                knowledge_count=len(case.get("knowledge", [])),
                method=config.structured_output,
            )
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


def planner_cases(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Routing-set and labelled-set rows as turns with the scripted planner's decision: the
    aspects the row is labelled with (the labelled set's `must`), safety left out (not learned)."""
    cases = []
    for row in rows:
        case = row.get("case", row)
        wanted = row["expected"].get("aspects", row["expected"].get("must", []))
        cases.append({**case, "planner": sorted(set(wanted) - {"safety"})})
    return cases


def agreement(router: Router, cases: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    agree = handed = 0
    for case in cases:
        route = route_case(router, case)
        agree += sorted(set(route.aspects) - {"safety"}) == case["planner"]
        handed += route.confidence < threshold
    n = len(cases)
    return {
        "agrees_with_planner": round(agree / n, 3),
        "handed_to_planner": round(handed / n, 3),
        "cases": n,
    }


async def learning_experiment(router: Router, directory: Path, ask_below: float) -> dict[str, Any]:
    """Hybrid turns on the training part: every turn the router is unsure of (confidence below
    `ask_below`) goes to the LLM planner over HTTP (FakeProvider, scripted with the turn's
    labels: a stand-in for a real LLM planner) and its decision is kept with `record_decision`;
    then `fit` and a router with the learned weights, both measured on the held-out part."""
    from langgraph.store.memory import InMemoryStore

    from redraft.routing.learning import fit, record_decision, stored_decisions, write_learned

    train = planner_cases(
        read_jsonl(LABELLED["dev"]) + [r for r in read_jsonl(ROUTING_SET) if r["id"] % 2 == 0]
    )
    held_out = planner_cases(
        read_jsonl(LABELLED["heldout"]) + [r for r in read_jsonl(ROUTING_SET) if r["id"] % 2]
    )
    store = InMemoryStore()
    with FakeProvider() as provider:
        config = RefinerConfig(
            base_url=provider.base_url, api_key="k", max_retries=0, learn_routing=True
        )
        model = make_chat_model(config.model_for("planner"), config)
        for case in train:
            route = route_case(router, case)
            if route.confidence >= ask_below:
                continue
            provider.script(
                "planner", {"steps": [{"aspect": a, "reason": "needed"} for a in case["planner"]]}
            )
            chosen = await plan_critics(
                model,
                aspects=list(ASPECTS),
                history=case["messages"],
                reply=case.get("draft", ""),
                persona_count=len(case.get("persona", [])),
                knowledge_count=len(case.get("knowledge", [])),
                method=config.structured_output,
            )
            await record_decision(store, config, route.features, chosen.aspects)
    decisions, _ = await stored_decisions(store, config)
    learned = fit(decisions)
    path = directory / "router_learned.json"
    write_learned(learned, path)
    threshold = RefinerConfig().hybrid_threshold
    before = agreement(router, held_out, threshold)
    trained = Router(router.embeddings, router.examples, learned)
    after = agreement(trained, held_out, threshold)
    return {
        "ask_below": ask_below,
        "training_turns": len(train),
        "decisions_kept": len(decisions),
        "learned_aspects": sorted(learned.aspects),
        "held_out": {"before": before, "after": after},
    }


def quick(part: str, passes: int) -> int:
    """`--only labelled|learning`: one part, printed and written to results/routing_<part>.json."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    router = get_router(RefinerConfig(embedding_threads=1))
    router.load()
    if part == "labelled":
        rows = {split: read_jsonl(path) for split, path in LABELLED.items()}
        result: dict[str, Any] = {s: labelled(router, r) for s, r in rows.items()}
        result["latency_ms"] = latency(router, rows["dev"] + rows["heldout"], passes)
        result["load_average"] = os.getloadavg()
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            result = {
                f"ask_below_{t}": asyncio.run(learning_experiment(router, Path(directory), t))
                for t in (RefinerConfig().hybrid_threshold, 1.0)
            }
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
        "--only",
        choices=["labelled", "learning"],
        help="just the labelled-set figures and latency, or just the learning experiment",
    )
    args = parser.parse_args()
    if args.only:
        return quick(args.only, args.passes)
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
