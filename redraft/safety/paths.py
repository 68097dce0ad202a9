"""RAISE's path library: the best attribute-acquisition orders of past queries, found by kNN.

The safety critic sees the paths of the k most similar stored queries as examples when it picks
the next attribute to ask about. redraft ships a library written by the project (per-domain
priors); `redraft safety build-paths` writes more, and `safety_paths` in the config adds them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import structlog
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field, ValidationError

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


@dataclass
class PathLibrary:
    """Stored paths with their query embeddings (computed once, on first use)."""

    paths: list[AcquisitionPath]
    embeddings: Embeddings
    _vectors: np.ndarray | None = None
    _lock: asyncio.Lock | None = None

    async def nearest(self, query: str, k: int = 3) -> list[dict]:
        """The k most similar stored queries with their paths, best first."""
        if not self.paths or k <= 0:
            return []
        if self._vectors is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._vectors is None:
                    docs = [p.query for p in self.paths]
                    self._vectors = np.asarray(await self.embeddings.aembed_documents(docs))
        vector = np.asarray(await self.embeddings.aembed_query(query))
        scores = self._vectors @ vector
        best = np.argsort(-scores)[:k]
        return [
            {
                "query": self.paths[i].query,
                "path": list(self.paths[i].best_path),
                "domain": self.paths[i].domain,
                "similarity": round(float(scores[i]), 3),
            }
            for i in best
        ]


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
