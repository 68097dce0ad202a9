"""The results file of an evaluation run: one JSON line per (case, strategy), resumable.

Each row is written whole and flushed to disk as soon as its case is done, so an interrupted
run loses at most the rows in flight. On restart the finished rows are read back and skipped;
a row that failed is retried; a line cut short by the interruption is dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from redraft.state import PairwiseVerdict

Key = tuple[str, str]


class Cost(BaseModel):
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class PairwiseResult(BaseModel):
    """A strategy's reply against the draft. Identical replies are a tie without a judge call."""

    identical: bool = False
    verdict: PairwiseVerdict | None = None


class Row(BaseModel):
    """One strategy's reply to one case, with its cost and the judges' verdicts."""

    case_id: str
    strategy: str
    ok: bool = True
    error: str | None = None
    reply: str = ""
    draft: str = ""
    changed: bool = False
    cost: Cost = Field(default_factory=Cost, description="The refiner's calls for this reply.")
    latency_ms: float = 0.0
    degraded: list[str] = Field(default_factory=list)
    gate: str | None = Field(None, description="What the regression gate kept, when it ran.")
    geval: dict[str, dict[str, Any]] | None = None
    safety: dict[str, dict[str, Any]] | None = None
    pairwise: PairwiseResult | None = None
    judge_cost: Cost = Field(default_factory=Cost)

    @property
    def key(self) -> Key:
        return (self.case_id, self.strategy)


class ResultsFile:
    """Append-only JSONL of rows; the last row written for a key is the one that counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: Any = None

    def load(self) -> dict[Key, Row]:
        """The latest row per key; a torn last line (an interrupted write) is cut off."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)
        rows: dict[Key, Row] = {}
        for number, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = Row.model_validate_json(line)
            except ValidationError as exc:
                raise ValueError(f"{self.path} line {number}: not a result row ({exc})") from exc
            rows[row.key] = row
        return rows

    def append(self, row: Row) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("a", encoding="utf-8")
        self._out.write(json.dumps(row.model_dump(mode="json"), ensure_ascii=False) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
