"""RAISE's path library: the best attribute-acquisition orders of past queries, found by kNN.

The safety critic sees the paths of the k most similar stored queries as examples when it picks
the next attribute to ask about. redraft ships a library written by the project (per-domain
priors); `redraft safety build-paths` writes more, and `safety_paths` in the config adds them.

A lookup never runs a model in the turn: when something in the process has already embedded the
query (persona memory, the knowledge base), its vector is compared with the stored queries'; else
the stored queries are ranked by the words they share with it (TF-IDF over character n-grams).
On PENGUIN's paths the two suggest the right first attribute equally often (BENCHMARKS.md,
"Safety"), while embedding the query alone would cost more CPU than the rest of the critic's turn.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import structlog
from pydantic import BaseModel, Field, ValidationError

from redraft.embeddings import LocalEmbeddings
from redraft.state import Domain, PenguinAttribute

log = structlog.get_logger("redraft.safety")


class AcquisitionPath(BaseModel):
    query: str = Field(min_length=1)
    best_path: list[PenguinAttribute] = Field(min_length=1)
    domain: Domain | None = None


def read_paths(path: Path | None = None) -> list[AcquisitionPath]:
    """The shipped library, or a JSONL file of `{"query", "best_path", "domain"?}` lines."""
    if path is None:
        text = resources.files("redraft.data").joinpath("safety_paths.jsonl").read_text("utf-8")
        source = "redraft/data/safety_paths.jsonl"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    paths = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            paths.append(AcquisitionPath.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{source} line {number}: {exc.errors()[0]['msg']}") from exc
    return paths


_WORD = re.compile(r"\S+")
GRAMS = (3, 4, 5)


def grams(text: str) -> Counter[str]:
    """The character n-grams of each word (as split by white space), padded with spaces: words
    that share a stem ("divorce", "divorced") share most of theirs."""
    padded = [f" {word} " for word in _WORD.findall(text.lower())]
    return Counter(
        word[i : i + n] for word in padded for n in GRAMS for i in range(len(word) - n + 1)
    )


class WordIndex:
    """TF-IDF over character n-grams (sublinear counts, smoothed idf, unit length), cosine
    similarity: a lookup costs about a tenth of a millisecond and needs no model."""

    def __init__(self, texts: Sequence[str]) -> None:
        counts = [grams(text) for text in texts]
        frequency = Counter(gram for count in counts for gram in count)
        self.size = len(texts)
        self.column = {gram: i for i, gram in enumerate(frequency)}
        self.idf = np.log((1 + self.size) / (1 + np.fromiter(frequency.values(), float))) + 1
        # The texts' weights as (text, column, weight) triples: a sparse matrix in numpy.
        rows, columns, weights = [], [], []
        for row, count in enumerate(counts):
            found, weight = self._weights(count)
            rows += [row] * len(found)
            columns += found
            weights.append(weight)
        self.rows, self.columns = np.array(rows, dtype=int), np.array(columns, dtype=int)
        self.weights = np.concatenate(weights) if weights else np.zeros(0)

    def _weights(self, count: Counter[str]) -> tuple[list[int], np.ndarray]:
        known = [(self.column[g], n) for g, n in count.items() if g in self.column]
        columns = [column for column, _ in known]
        weights = (1 + np.log([n for _, n in known])) * self.idf[columns]
        norm = np.linalg.norm(weights)
        return columns, weights / norm if norm else weights

    def scores(self, text: str) -> np.ndarray:
        """The cosine similarity of `text` to each indexed text."""
        columns, weights = self._weights(grams(text))
        query = np.zeros(len(self.column))
        query[columns] = weights
        return np.bincount(
            self.rows, weights=self.weights * query[self.columns], minlength=self.size
        )


@dataclass
class PathLibrary:
    """Stored paths, looked up by a query's vector when the process has one, else by words.

    `embeddings`: the local model, whose recent vectors a lookup may reuse (None: words only).
    The stored queries' vectors are made once, in a background thread, the first time a lookup
    has a query vector to compare them with; lookups go by words until then.
    """

    paths: list[AcquisitionPath]
    embeddings: LocalEmbeddings | None = None
    _words: WordIndex | None = None
    _vectors: np.ndarray | None = None
    _embedding: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def nearest(self, query: str, k: int = 3) -> list[dict]:
        """The k most similar stored queries with their paths, best first (`by`: "meaning"
        when compared by vectors, "words" by TF-IDF)."""
        if not self.paths or k <= 0:
            return []
        vector = self.embeddings.embedded(query) if self.embeddings is not None else None
        vectors = self._paths_vectors() if vector is not None else None
        if vector is not None and vectors is not None:
            scores, by = vectors @ vector, "meaning"
        else:
            if self._words is None:
                self._words = WordIndex([p.query for p in self.paths])
            scores, by = self._words.scores(query), "words"
        best = np.argsort(-scores, kind="stable")[:k]
        return [
            {
                "query": self.paths[i].query,
                "path": list(self.paths[i].best_path),
                "domain": self.paths[i].domain,
                "similarity": round(float(scores[i]), 3),
                "by": by,
            }
            for i in best
        ]

    def _paths_vectors(self) -> np.ndarray | None:
        """The stored queries' vectors, or None while a background thread makes them."""
        if self._vectors is None:
            with self._lock:
                if self._embedding is None:
                    self._embedding = threading.Thread(
                        target=self.embed_paths, name="redraft-safety-paths"
                    )
                    self._embedding.start()
        return self._vectors

    def embed_paths(self) -> None:
        """Make the stored queries' vectors now (once; a failure leaves lookups to words)."""
        if self._vectors is not None or self.embeddings is None:
            return
        try:
            vectors = self.embeddings.embed_documents([p.query for p in self.paths])
        except Exception as exc:
            log.warning("safety.paths_not_embedded", error=f"{type(exc).__name__}: {exc}")
            return
        self._vectors = np.asarray(vectors)


def first_attribute_vote(examples: list[dict], known: set[str]) -> str | None:
    """The first not-yet-known attribute most often first among the examples' paths.

    Ties go to the more similar example. This is the library's own suggestion, without a model.
    """
    votes: dict[str, float] = {}
    for rank, example in enumerate(examples):
        nxt = next((a for a in example["path"] if a not in known), None)
        if nxt:
            votes[nxt] = votes.get(nxt, 0.0) + 1.0 + 1e-3 * (len(examples) - rank)
    return max(votes, key=votes.__getitem__) if votes else None
