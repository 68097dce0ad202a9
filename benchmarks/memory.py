"""Persona memory: retrieval latency with 1,000 facts, and what learning costs per turn.

1. Retrieval: a user with 1,000 stored facts; each query runs `persona_for_turn`, the code of the
   graph's `load_context` (embed the query with all-MiniLM-L6-v2, read the profile, the top-k
   facts and the nearest edit preferences, apply the token budget). Per store: InMemoryStore
   (native vector index), SQLite (`memory.sqlite`; sqlite-vec when this Python can load it,
   else vectors in the items, ranked in Python) and PostgreSQL (vectors in the items).
2. Learning: turns through the real path (ChatOpenAI → HTTP → FakeProvider with a fixed latency
   per call) on one Refiner, in one run: half the users with learning (`memory_learn`, a
   per-turn setting), half without, concurrently, each sending the next turn as soon as the
   reply is in (not waiting for the background work, whose effects on the next turn — reloading
   the vectors, sharing the CPU — are then part of the learning users' turn times). Reports turn
   time with and without learning, and the memory agent's calls and tokens per turn
   (FakeProvider counts tokens as words).

    python -m benchmarks.memory
    python -m benchmarks.memory --database-url postgresql://postgres@127.0.0.1:5432/test

Writes benchmarks/results/memory.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from redraft import Refiner, RefinerConfig
from redraft.embeddings import LocalEmbeddings
from redraft.log import configure_logging
from redraft.personas.model import Fact
from redraft.personas.recall import persona_for_turn
from redraft.personas.store import PersonaStore, open_store
from redraft.testing import FakeProvider

RESULTS = Path(__file__).parent / "results" / "memory.json"

HOBBIES = [
    "plays chess",
    "grows tomatoes",
    "collects vinyl records",
    "swims in the sea",
    "builds model trains",
    "bakes sourdough",
    "climbs indoors",
    "paints watercolours",
    "knits scarves",
    "restores old bicycles",
]
PLACES = [
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Toronto",
    "Krakow",
    "Lima",
    "Perth",
    "Oslo",
    "Seville",
    "Hanoi",
]
TIMES = [
    "on Sunday mornings",
    "after work",
    "with a friend",
    "every summer",
    "in winter",
    "with their kids",
    "at a local club",
    "when stressed",
    "on holidays",
    "since 2019",
]
QUERIES = [
    "What should I cook tonight?",
    "Plan a weekend trip for me.",
    "How do I stay fit in winter?",
    "Gift ideas for my sister?",
    "How can I relax after a long shift?",
    "Which hobby could I start this year?",
    "Where should I travel in spring?",
    "How do I fix a flat tyre?",
    "Suggest a book for the train.",
    "What music would I enjoy?",
]


def synthetic_facts(n: int) -> list[Fact]:
    combos = itertools.product(HOBBIES, PLACES, TIMES)
    return [
        Fact(text=f"The user {hobby} in {place} {when}.", source="imported")
        for hobby, place, when in itertools.islice(combos, n)
    ]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": at(0.95),
        "p99": at(0.99),
        "mean": round(statistics.fmean(ordered), 2),
        "n": len(ordered),
    }


async def retrieval(kind: str, database_url: str | None, queries: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        config = RefinerConfig(checkpointer=kind, home=home, database_url=database_url)
        async with contextlib.AsyncExitStack() as stack:
            store = await open_store(config, stack)
            personas = PersonaStore.on(store, config)
            user_id = f"bench-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            await personas.write(user_id, facts=synthetic_facts(1000))
            write_s = time.perf_counter() - started
            await persona_for_turn(store, config, user_id=user_id, query="warm up", inline=[])
            times = []
            for i in range(queries):
                started = time.perf_counter()
                lines, problems = await persona_for_turn(
                    store, config, user_id=user_id, query=QUERIES[i % len(QUERIES)], inline=[]
                )
                times.append((time.perf_counter() - started) * 1000)
                assert lines and not problems
            # The turn after a memory update: a Python-ranking store reloads its vectors.
            after_write = []
            for i in range(queries // 5):
                await personas.add_fact(user_id, f"The user mentioned topic {i}.")
                started = time.perf_counter()
                await persona_for_turn(
                    store, config, user_id=user_id, query=QUERIES[i % len(QUERIES)], inline=[]
                )
                after_write.append((time.perf_counter() - started) * 1000)
            await personas.forget(user_id)
        return {
            "store": kind,
            "native_index": personas.native,
            "facts": 1000,
            "write_1000_s": round(write_s, 2),
            "ms": percentiles(times),
            "ms_after_a_write": percentiles(after_write),
        }


async def learning(turns_per_user: int, users: int, latency_s: float) -> dict:
    async with FakeProvider(latency_s=latency_s) as provider:
        provider.set_default(
            "personalization", {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}
        )
        counter = itertools.count()

        def learn(call):
            n = next(counter)
            return {
                "facts": [
                    {
                        "action": "add",
                        "text": f"The user mentioned topic {n}.",
                        "source": "stated",
                        "confidence": 0.8,
                    }
                ],
                "style": None,
            }

        provider.set_default("memory", learn)
        with tempfile.TemporaryDirectory() as home:
            config = RefinerConfig(
                base_url=provider.base_url,
                api_key="bench",
                max_retries=0,
                home=home,
                checkpointer="sqlite",
                planner="all",
                critics=["personalization"],
                log_level="WARNING",
            )
            off = config.model_copy(update={"memory_learn": False})
            turn_ms: dict[str, list[float]] = {"with learning": [], "without learning": []}
            async with Refiner(config) as refiner:
                personas = await refiner.personas()
                for u in range(users):
                    await personas.write(f"user-{u}", facts=synthetic_facts(200))
                await refiner.arefine(
                    {"messages": [{"role": "user", "content": "warm up"}], "user_id": "user-0"},
                    config=off,
                )

                async def conversation(u: int) -> None:
                    for t in range(turns_per_user):
                        learning_on = u % 2 == 0
                        request = {
                            "messages": [{"role": "user", "content": QUERIES[t % len(QUERIES)]}],
                            "user_id": f"user-{u}",
                        }
                        started = time.perf_counter()
                        await refiner.arefine(request, config=config if learning_on else off)
                        key = "with learning" if learning_on else "without learning"
                        turn_ms[key].append((time.perf_counter() - started) * 1000)

                await asyncio.gather(*(conversation(u) for u in range(users)))
                drain_started = time.perf_counter()
                await refiner.wait_for_memory()
                drain_ms = (time.perf_counter() - drain_started) * 1000
            calls = provider.calls_for("memory")
            learned_turns = len(turn_ms["with learning"])
            prompt = [c.usage["prompt_tokens"] for c in calls]
            completion = [c.usage["completion_tokens"] for c in calls]
            chars = [sum(len(str(m["content"])) for m in c.messages) for c in calls]
            durations = [(c.ended - c.started) * 1000 for c in calls]
        return {
            "provider_latency_s": latency_s,
            "users": users,
            "turns": sum(map(len, turn_ms.values())),
            "turn_ms": {k: percentiles(v) for k, v in turn_ms.items()},
            "memory_calls_per_learning_turn": round(len(calls) / learned_turns, 2),
            "memory_prompt_tokens_per_turn": round(statistics.fmean(prompt), 1),
            "memory_completion_tokens_per_turn": round(statistics.fmean(completion), 1),
            "memory_prompt_chars_per_turn": round(statistics.fmean(chars), 1),
            "memory_call_ms": percentiles(durations),
            "background_left_after_last_turn_ms": round(drain_ms, 1),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="also measure the PostgreSQL store")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--turns", type=int, default=20, help="turns per user")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2, help="provider s per call")
    args = parser.parse_args()
    configure_logging("WARNING")
    load_s = LocalEmbeddings().warm_up()
    stores = ["memory", "sqlite"] + (["postgres"] if args.database_url else [])
    results = {"embedding_model_load_s": round(load_s, 2), "retrieval": []}
    for kind in stores:
        results["retrieval"].append(await retrieval(kind, args.database_url, args.queries))
    embed = LocalEmbeddings()
    times = []
    for i in range(args.queries):
        started = time.perf_counter()
        await embed.aembed_query(QUERIES[i % len(QUERIES)])
        times.append((time.perf_counter() - started) * 1000)
    results["query_embedding_ms"] = percentiles(times)
    results["learning"] = await learning(args.turns, args.users, args.latency)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print("| store | vectors | p50 ms | p95 ms | p99 ms | after a write: p50 | p95 |")
    print("|---|---|---|---|---|---|---|")
    for row in results["retrieval"]:
        ms, cold = row["ms"], row["ms_after_a_write"]
        index = "store's index" if row["native_index"] else "in the items, ranked in Python"
        print(
            f"| {row['store']} | {index} | {ms['p50']} | {ms['p95']} | {ms['p99']} "
            f"| {cold['p50']} | {cold['p95']} |"
        )
    print(f"\nquery embedding alone: p50 {results['query_embedding_ms']['p50']} ms")
    learned = results["learning"]
    print("\n| turns | p50 ms | p95 ms | mean ms | n |\n|---|---|---|---|---|")
    for key, ms in learned["turn_ms"].items():
        print(f"| {key} | {ms['p50']} | {ms['p95']} | {ms['mean']} | {ms['n']} |")
    print(json.dumps({k: v for k, v in learned.items() if k != "turn_ms"}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
