"""Recall of the knowledge base: hybrid (RRF) against embeddings-only and lexical-only.

Indexes the sample documents of benchmarks/data/kb_docs with `redraft.knowledge.base` (the code
`redraft kb add` runs, with the real all-MiniLM-L6-v2 embeddings), then asks every query of
benchmarks/data/retrieval_set.jsonl in each mode. A retrieved chunk is relevant when it comes
from the labelled file and contains the labelled words, so the labels do not depend on how the
files are chunked.

    python -m benchmarks.retrieval                       # SQLite (FTS5)
    python -m benchmarks.retrieval --database-url postgresql://postgres@127.0.0.1:5432/test

Writes benchmarks/results/retrieval[-postgres].json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from redraft.config import RefinerConfig
from redraft.knowledge.base import Hit, KnowledgeBase

HERE = Path(__file__).parent
DOCS = HERE / "data" / "kb_docs"
QUERIES = HERE / "data" / "retrieval_set.jsonl"
MODES = ("hybrid", "vector", "lexical")
K = 5


def normal(text: str) -> str:
    return " ".join(text.lower().split())


def relevant_ranks(hits: list[Hit], relevant: list[dict]) -> list[int | None]:
    """For each labelled item, the rank (1-based) of the first hit that matches it."""
    ranks: list[int | None] = []
    for item in relevant:
        rank = next(
            (
                n
                for n, hit in enumerate(hits, 1)
                if Path(hit.source).name == item["source"]
                and normal(item["contains"]) in normal(hit.text)
            ),
            None,
        )
        ranks.append(rank)
    return ranks


def scores(rows: list[dict]) -> dict[str, float]:
    def recall(k: int) -> float:
        return statistics.fmean(
            sum(r is not None and r <= k for r in row["ranks"]) / len(row["ranks"]) for row in rows
        )

    def reciprocal(row: dict) -> float:
        found = [r for r in row["ranks"] if r is not None]
        return 1 / min(found) if found else 0.0

    return {
        "recall@1": round(recall(1), 3),
        f"recall@{K}": round(recall(K), 3),
        f"mrr@{K}": round(statistics.fmean(reciprocal(row) for row in rows), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="benchmark the PostgreSQL store instead of SQLite")
    args = parser.parse_args()

    queries = [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as home:
        url = args.database_url
        if url:
            # A schema of its own, so the benchmark never touches another knowledge base.
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            url = _with_schema(url, schema)
        config = RefinerConfig(home=Path(home), database_url=url, embeddings="local")
        kb = KnowledgeBase.from_config(config)
        started = time.perf_counter()
        report = kb.add([DOCS])
        index_s = time.perf_counter() - started
        kb.search("warm up", K)  # the embedding matrix and the query path, loaded once

        results: dict[str, dict] = {}
        for mode in MODES:
            rows, latencies = [], []
            for query in queries:
                t0 = time.perf_counter()
                hits = kb.search(query["query"], K, mode)
                latencies.append((time.perf_counter() - t0) * 1000)
                rows.append({**query, "ranks": relevant_ranks(hits, query["relevant"])})
            kinds = sorted({q["kind"] for q in queries})
            results[mode] = {
                "all": scores(rows),
                **{kind: scores([r for r in rows if r["kind"] == kind]) for kind in kinds},
                "latency_ms": {
                    "p50": round(statistics.median(latencies), 2),
                    "p95": round(statistics.quantiles(latencies, n=20)[18], 2),
                },
                "missed": [r["query"] for r in rows if all(x is None or x > K for x in r["ranks"])],
            }
        if args.database_url:
            _drop_schema(args.database_url, schema)

    store = "postgres" if args.database_url else "sqlite"
    summary = {
        "store": store,
        "documents": len(report.added),
        "chunks": report.chunks,
        "queries": len(queries),
        "by_kind": {k: sum(q["kind"] == k for q in queries) for k in sorted(kinds)},
        "index_seconds": round(index_s, 2),
        "modes": results,
    }
    out = HERE / "results" / ("retrieval.json" if store == "sqlite" else "retrieval-postgres.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")

    print(
        f"{store}: {summary['documents']} files, {summary['chunks']} chunks, "
        f"{len(queries)} queries ({summary['by_kind']})\n"
    )
    kinds = sorted(summary["by_kind"])
    print(
        f"| mode | recall@1 | recall@{K} | MRR@{K} | "
        + " | ".join(f"recall@{K} {kind}" for kind in kinds)
        + " | p50 ms | p95 ms |"
    )
    print("|---" * (6 + len(kinds)) + "|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['all']['recall@1']} | {r['all'][f'recall@{K}']} | "
            f"{r['all'][f'mrr@{K}']} | "
            + " | ".join(str(r[kind][f"recall@{K}"]) for kind in kinds)
            + f" | {r['latency_ms']['p50']} | {r['latency_ms']['p95']} |"
        )
    print(f"\nwritten to {out.relative_to(HERE.parent)}")
    return 0


def _with_schema(url: str, schema: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    raise SystemExit(main())
