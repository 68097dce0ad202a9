"""The safety agent on PENGUIN's 103 queries that have a stored best acquisition path (RAISE).

(a) First question: how often the attribute asked first is the first attribute of the query's
    stored best path — the shipped path library's vote (the library holds no PENGUIN text),
    looked up by meaning (kNN over all-MiniLM-L6-v2 vectors, when the turn's query was embedded
    already) and by words (TF-IDF, when it was not) — against the majority baseline; top-1 and
    top-2. Then how far the two lookups agree, and how often each finds stored queries of the
    query's own PENGUIN domain.
(b) Questions per query: the real graph (Refiner, a thread, interrupt and resume) with a
    simulated user who answers from the query's PENGUIN profile, and a rule-based stand-in for
    the safety critic's LLM (RULE below). The figure describes that policy, not an LLM.
(c) Added latency of the safety critic in the parallel round: the same turns through
    FakeProvider (250 ms per call) with critics {factuality, personalization, coherence} and
    with safety added, planner "all", alternating in the same run.

    python -m benchmarks.safety            # writes benchmarks/results/safety.json
    python -m benchmarks.safety --quick    # fewer queries and turns: safety-quick.json

PENGUIN is read from ../shared/data/penguin next to the repository (or --penguin DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redraft import Refiner, RefinerConfig
from redraft.embeddings import RECENT_BATCH, LocalEmbeddings
from redraft.safety.critic import ATTRIBUTE_QUESTIONS, EXAMPLES_K
from redraft.safety.paths import PathLibrary, first_attribute_vote, read_paths
from redraft.testing import FakeProvider, ScriptedChatModel

HERE = Path(__file__).parent
REPO = HERE.parent
DEFAULT_PENGUIN = REPO.parent / "shared" / "data" / "penguin"

RULE = (
    "The stand-in reads the safety prompt as the LLM would: the known and declined attributes, "
    "the questions left, and the example paths of the 3 nearest stored queries. It asks the "
    "library-voted attribute (`first_attribute_vote` over those paths, skipping known and "
    "declined attributes) until every attribute that one of the 3 paths lists in its first "
    "{positions} place(s) is known or declined (then completeness 5, verdict pass), or no "
    "questions are left (max_questions=3)."
)
POSITIONS = (1, 2)
LATENCY_S = 0.25
SPREAD = ("factuality", "personalization", "coherence")
K_SHOWN = sorted({1, EXAMPLES_K, 5})
PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}


def load_penguin(directory: Path) -> list[dict[str, Any]]:
    """The queries with a stored best path, each with the profile of its (first) PENGUIN row."""

    def rows(name: str) -> list[dict[str, Any]]:
        lines = (directory / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    profiles = {row["profile_id"]: row["attributes"] for row in rows("profiles.jsonl")}
    first_row: dict[str, dict[str, Any]] = {}
    for row in rows("queries.jsonl"):
        first_row.setdefault(row["query"], row)
    cases = []
    for path in rows("mcts_paths.jsonl"):
        row = first_row[path["query"]]
        cases.append(
            {
                "query": path["query"],
                "best_path": path["best_path"],
                "domain": row["domain"],
                "profile": profiles[row["profile_id"]],
            }
        )
    return cases


# ── (a) the first question ──────────────────────────────────────────────────────────────


def domain_queries(directory: Path, every: int) -> list[dict[str, str]]:
    """Every `every`-th PENGUIN query with its domain (all seven domains, in order)."""
    lines = (directory / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [{"query": r["query"], "domain": r["domain"]} for r in rows[::every]]


async def first_question(
    cases: list[dict[str, Any]], labelled: list[dict[str, str]]
) -> dict[str, Any]:
    embeddings = LocalEmbeddings()
    by_meaning = PathLibrary(read_paths(), embeddings)
    by_meaning.embed_paths()
    by_words = PathLibrary(read_paths())  # what a turn whose query nobody embedded looks up
    firsts = [case["best_path"][0] for case in cases]
    ranked = [attribute for attribute, _ in Counter(firsts).most_common()]
    rows: dict[str, dict[str, Any]] = {}
    nearest: dict[str, list[list[dict[str, Any]]]] = {"knn": [], "words": []}
    for case in cases:
        embeddings.embed_query(case["query"])  # found by the library as a turn's would be
        for name, library in (("knn", by_meaning), ("words", by_words)):
            examples = await library.nearest(case["query"], max(K_SHOWN))
            assert {e["by"] for e in examples} == {"meaning" if name == "knn" else "words"}
            nearest[name].append(examples)
    for name, found in nearest.items():
        for k in K_SHOWN:
            top1 = top2 = 0
            for examples, first in zip(found, firsts, strict=True):
                guess = first_attribute_vote(examples[:k], set())
                # the second guess: the library's vote once the first guess is known
                second = first_attribute_vote(examples[:k], {guess}) if guess else None
                top1 += guess == first
                top2 += first in (guess, second)
            rows[f"{name}_k{k}"] = {"top1": top1 / len(cases), "top2": top2 / len(cases)}
    rows["majority"] = {
        "top1": sum(f == ranked[0] for f in firsts) / len(cases),
        "top2": sum(f in ranked[:2] for f in firsts) / len(cases),
        "guesses": ranked[:2],
    }
    shipped = Counter(p.best_path[0] for p in read_paths()).most_common(1)[0][0]
    return {
        "queries": len(cases),
        "critic_sees_k": EXAMPLES_K,
        "first_attribute_counts": dict(Counter(firsts).most_common()),
        "shipped_library_majority": shipped,
        "rows": {name: _rounded(row) for name, row in rows.items()},
        "lookup": lookup_agreement(nearest, EXAMPLES_K),
        "same_domain": await same_domain(labelled, by_meaning, by_words, embeddings),
    }


async def same_domain(
    labelled: list[dict[str, str]],
    by_meaning: PathLibrary,
    by_words: PathLibrary,
    embeddings: LocalEmbeddings,
) -> dict[str, Any]:
    """The share of the k shown stored queries that are in the query's PENGUIN domain (chance:
    the shipped library's share of each domain, 1/7 here), each way."""
    texts = [row["query"] for row in labelled]
    for start in range(0, len(texts), RECENT_BATCH):  # remembered, so the library finds them
        embeddings.embed_documents(texts[start : start + RECENT_BATCH])
    shares: dict[str, list[float]] = {"knn": [], "words": []}
    for row in labelled:
        for name, library in (("knn", by_meaning), ("words", by_words)):
            examples = await library.nearest(row["query"], EXAMPLES_K)
            shares[name].append(sum(e["domain"] == row["domain"] for e in examples) / EXAMPLES_K)
    return {
        "queries": len(labelled),
        "k": EXAMPLES_K,
        **{name: round(statistics.fmean(values), 3) for name, values in shares.items()},
    }


def lookup_agreement(nearest: dict[str, list[list[dict[str, Any]]]], k: int) -> dict[str, Any]:
    """How far the lookup by words finds what the lookup by meaning finds, at the k shown."""
    pairs = list(zip(nearest["knn"], nearest["words"], strict=True))

    def shared(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
        return len({e["query"] for e in a[:k]} & {e["query"] for e in b[:k]}) / k

    return {
        "k": k,
        "shared_neighbours": round(statistics.fmean(shared(a, b) for a, b in pairs), 3),
        "same_nearest": round(
            statistics.fmean(a[0]["query"] == b[0]["query"] for a, b in pairs), 3
        ),
        "same_vote": round(
            statistics.fmean(
                first_attribute_vote(a[:k], set()) == first_attribute_vote(b[:k], set())
                for a, b in pairs
            ),
            3,
        ),
    }


# ── (b) questions per query, through the real graph ─────────────────────────────────────

KNOWN = re.compile(r'<attribute id="a\d+">\n([^:\n]+):')
DECLINED = re.compile(r"Attributes the user declined to share: ([^.]*)\.")
LEFT = re.compile(r"Questions left in this conversation: (\d+)")
EXAMPLE = re.compile(r"→ ask first: (.+)$", re.MULTILINE)
REPLY = re.compile(r"<reply>\n(.*)\n</reply>", re.DOTALL)


def stand_in_critic(positions: int) -> Any:
    """The rule-based safety critic (RULE), deciding from the prompt it was given."""
    return lambda call: decide(call.messages[-1]["content"], positions)


def decide(prompt: str, positions: int) -> dict[str, Any]:
    known = set(KNOWN.findall(prompt))
    declined = {a.strip() for a in DECLINED.search(prompt).group(1).split(",")} - {"none"}
    left = int(LEFT.search(prompt).group(1))
    paths = [line.split(", ") for line in EXAMPLE.findall(prompt)]
    if not paths:
        raise RuntimeError("the safety prompt carries no example paths: has its format changed?")
    relevant = {attribute for path in paths for attribute in path[:positions]}
    done = known | declined
    ask = first_attribute_vote([{"path": p} for p in paths], done)
    if relevant <= done or left == 0 or ask is None:
        return {**PASS, "domain": None, "risk": "medium", "completeness": 5}
    return {
        **PASS,
        "verdict": "ask",
        "risk": "medium",
        "completeness": 1,
        "ask_attribute": ask,
        "question": ATTRIBUTE_QUESTIONS[ask],
    }


def reads_answer(call: Any) -> dict[str, Any]:
    """The answer reader's stand-in: the user's answer, as given, is the value."""
    answer = REPLY.search(call.messages[-1]["content"]).group(1).strip()
    return {"answered": bool(answer), "value": answer}


async def questions_per_query(cases: list[dict[str, Any]], positions: int) -> dict[str, Any]:
    model = ScriptedChatModel(
        defaults={"safety": stand_in_critic(positions), "safety_answer": reads_answer}
    )
    config = RefinerConfig(
        checkpointer="memory",
        planner="all",
        critics=["safety"],
        embeddings="local",
        safety_paths=None,
        max_questions=3,
        safety_completeness=4,
        memory_learn=False,  # answers still go to the profile; no fact-learning calls
        log_level="WARNING",
    )
    counts, rows = [], []
    async with Refiner(config, model=model) as refiner:
        for number, case in enumerate(cases):
            user, thread = f"user-{number}", "t"
            result = await refiner.arefine(
                {
                    "messages": [{"role": "user", "content": case["query"]}],
                    "user_id": user,
                    "thread_id": thread,
                }
            )
            asked: list[str] = []
            declined: list[str] = []
            while result.question is not None:
                attribute = result.question.attribute
                asked.append(attribute)
                result = await refiner.aresume(user, thread, case["profile"][attribute])
                declined += [a.attribute for a in result.asked if a.declined]
            counts.append(len(asked))
            answered = set(asked) - set(declined)
            rows.append(
                {
                    "query": case["query"],
                    "asked": asked,
                    "declined": declined,
                    "first_matches_best_path": bool(asked) and asked[0] == case["best_path"][0],
                    "best_path_known": len(answered & set(case["best_path"]))
                    / len(case["best_path"]),
                }
            )
    return {
        "rule": RULE.format(positions=positions),
        "queries": len(cases),
        "mean_questions": round(statistics.fmean(counts), 3),
        "distribution": {str(n): counts.count(n) for n in sorted(set(counts))},
        "declined_answers": sum(len(r["declined"]) for r in rows),
        "first_question_matches_best_path": round(
            statistics.fmean(r["first_matches_best_path"] for r in rows), 3
        ),
        "share_of_best_path_known_at_answer": round(
            statistics.fmean(r["best_path_known"] for r in rows), 3
        ),
        "turns": rows,
    }


# ── (c) added latency of the safety critic ──────────────────────────────────────────────


async def added_latency(cases: list[dict[str, Any]], turns: int) -> dict[str, Any]:
    queries = [case["query"] for case in cases]
    with FakeProvider(latency_s=LATENCY_S) as provider:
        for agent in SPREAD:
            provider.set_default(agent, PASS)
        provider.set_default("safety", {**PASS, "risk": "low", "completeness": 5})
        base = RefinerConfig(
            base_url=provider.base_url,
            api_key="bench",
            max_retries=0,
            checkpointer="memory",
            planner="all",
            embeddings="local",
            safety_paths=None,
            memory=False,  # the same for both; its background calls would only add noise
            log_level="WARNING",
        )
        configs = {
            "without_safety": base.model_copy(update={"critics": list(SPREAD)}),
            "with_safety": base.model_copy(update={"critics": [*SPREAD, "safety"]}),
        }
        times: dict[str, list[float]] = {name: [] for name in configs}
        async with Refiner(base) as refiner:
            for config in configs.values():  # warm-up: connections, embedding model
                await refiner.arefine(_request(queries[0]), config=config)
            for n in range(turns):
                order = list(configs) if n % 2 == 0 else list(reversed(configs))
                for name in order:
                    started = time.perf_counter()
                    result = await refiner.arefine(
                        _request(queries[n % len(queries)]), config=configs[name]
                    )
                    times[name].append((time.perf_counter() - started) * 1000)
                    assert result.plan.aspects == configs[name].critics and not result.degraded
    summary = {name: _percentiles(values) for name, values in times.items()}
    return {
        "provider_latency_ms": LATENCY_S * 1000,
        "turns_each": turns,
        **summary,
        "added_ms": {
            key: round(summary["with_safety"][key] - summary["without_safety"][key], 1)
            for key in ("median_ms", "p90_ms")
        },
    }


def _request(query: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": query}]}


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 1),
        "p90_ms": round(statistics.quantiles(values, n=10)[8], 1),
    }


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


# ── the run ─────────────────────────────────────────────────────────────────────────────


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--penguin", type=Path, default=DEFAULT_PENGUIN, help="PENGUIN directory")
    parser.add_argument("--quick", action="store_true", help="20 queries, 10 turns per config")
    args = parser.parse_args()
    if not (args.penguin / "mcts_paths.jsonl").exists():
        print(
            f"benchmarks.safety: no PENGUIN data in {args.penguin} (--penguin DIR)", file=sys.stderr
        )
        return 2
    cases = load_penguin(args.penguin)
    if args.quick:
        cases = cases[:20]
    turns = 10 if args.quick else 40

    # (b) first: (a) embeds every query, and the turns' path lookups would find those vectors.
    questions = {f"first_{n}": asyncio.run(questions_per_query(cases, n)) for n in POSITIONS}
    labelled = domain_queries(args.penguin, every=50 if args.quick else 10)
    first = asyncio.run(first_question(cases, labelled))
    latency = asyncio.run(added_latency(cases, turns))
    command = "python -m benchmarks.safety" + (" --quick" if args.quick else "")
    summary = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "first_question": first,
        "questions_per_query": questions,
        "added_latency": latency,
    }
    out = HERE / "results" / ("safety-quick.json" if args.quick else "safety.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(report(summary))
    print(f"\nwrote {out.relative_to(REPO)}", file=sys.stderr)
    return 0


def report(summary: dict[str, Any]) -> str:
    first, latency = summary["first_question"], summary["added_latency"]
    lines = [
        f"(a) first question = first attribute of the stored best path ({first['queries']} "
        "queries)",
        "",
        "| suggestion | top-1 | top-2 |",
        "|---|---|---|",
    ]
    for name, row in first["rows"].items():
        if name == "majority":
            label = f"majority ({', '.join(row['guesses'])})"
        else:
            way, k = name.rsplit("_k", 1)
            label = f"path library by {'meaning (kNN)' if way == 'knn' else 'words'}, k={k}"
        lines.append(f"| {label} | {row['top1']:.3f} | {row['top2']:.3f} |")
    lookup, domain = first["lookup"], first["same_domain"]
    lines += [
        "",
        f"by words against by meaning, k={lookup['k']}: neighbours shared "
        f"{lookup['shared_neighbours']}, same nearest {lookup['same_nearest']}, same vote "
        f"{lookup['same_vote']}; neighbours in the query's PENGUIN domain ({domain['queries']} "
        f"queries): by meaning {domain['knn']}, by words {domain['words']}",
        "",
        "(b) questions per query, real graph, rule-based critic, simulated user",
        "",
        "| rule: ask until known, the attributes the 3 nearest paths list … | mean questions | "
        "questions: queries | first = best path's first | share of best path known |",
        "|---|---|---|---|---|",
    ]
    for positions in POSITIONS:
        row = summary["questions_per_query"][f"first_{positions}"]
        where = "first" if positions == 1 else f"in their first {positions} places"
        spread = ", ".join(f"{n}: {count}" for n, count in row["distribution"].items())
        lines.append(
            f"| {where} | {row['mean_questions']} | {spread} | "
            f"{row['first_question_matches_best_path']} | "
            f"{row['share_of_best_path_known_at_answer']} |"
        )
    with_safety, without = latency["with_safety"], latency["without_safety"]
    lines += [
        "",
        f"(c) turn wall time, FakeProvider {latency['provider_latency_ms']:.0f} ms per call, "
        f"{latency['turns_each']} turns each",
        "",
        "| critics | median ms | p90 ms |",
        "|---|---|---|",
        f"| factuality, personalization, coherence | {without['median_ms']} | "
        f"{without['p90_ms']} |",
        f"| + safety | {with_safety['median_ms']} | {with_safety['p90_ms']} |",
        f"| added | {latency['added_ms']['median_ms']} | {latency['added_ms']['p90_ms']} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
