"""A judge checked before it is trusted.

Before its scores mean anything, the judge is shown pairs where one reply is known to be worse
(it contradicts the passage, ignores the persona, contradicts the conversation, or is unsafe),
each reply scored on its own as in a real run. A judge that ranks too few pairs right — a small
model gives every reply 5/5 — makes quality tables that say nothing, and `redraft eval` marks
them untrustworthy, whatever the scores.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import openai
from langchain_core.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from redraft.agents.judge import DIMENSIONS, JudgeContext, judge_reply
from redraft.llm.calls import ProviderCallError

AGENT = "judge_calibration"
THRESHOLD = 0.75
"""Share of pairs a judge must rank right (a tie is not right) for its tables to be trusted."""
NO_ANSWER = (
    ProviderCallError,
    openai.APIError,
    ModelAPIError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelTimeoutError,
)
"""Errors of the endpoint, not of the judge: the pair got no answer to rank."""


class CalibrationPair(BaseModel):
    id: str
    kind: str = Field(description="What is wrong with the worse reply.")
    dimension: str = Field(description="The judge's dimension that must tell them apart.")
    history: list[dict[str, str]]
    persona: list[str] = Field(default_factory=list)
    knowledge: list[str] = Field(default_factory=list)
    better: str
    worse: str


@dataclass
class Calibration:
    """How the judge did: per pair, the two scores on the pair's dimension. A pair the judge
    answered badly (output that never parsed) is `failed`: the judge's fault, not right. A pair
    whose calls never got an answer (endpoint down, timeouts) is `unreachable`: that says nothing
    of the judge, so the calibration is incomplete, not kept, and done again on the next run."""

    scores: dict[str, tuple[int, int]]
    failed: dict[str, str]
    threshold: float = THRESHOLD
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def right(self) -> int:
        return sum(better > worse for better, worse in self.scores.values())

    @property
    def pairs(self) -> int:
        return len(self.scores) + len(self.failed) + len(self.unreachable)

    @property
    def complete(self) -> bool:
        return not self.unreachable

    @property
    def accuracy(self) -> float:
        return self.right / self.pairs if self.pairs else 0.0

    @property
    def trusted(self) -> bool:
        return self.complete and self.accuracy >= self.threshold

    def summary(self) -> str:
        if not self.complete:
            first = next(iter(self.unreachable.values()))
            return (
                f"INCOMPLETE: {len(self.unreachable)} of {self.pairs} pairs could not be judged "
                f"(the judge's endpoint failed: {first}); run again to calibrate"
            )
        verdict = "trusted" if self.trusted else "UNTRUSTWORTHY"
        return (
            f"{self.right} of {self.pairs} known-worse replies ranked below the better one "
            f"({self.accuracy:.0%}; {self.threshold:.0%} needed): {verdict}"
        )

    def warning(self) -> str | None:
        """What the report says above its tables when they are not to be trusted."""
        if self.trusted:
            return None
        if not self.complete:
            return (
                "the judge could not be calibrated (its endpoint failed on some pairs), so the "
                "quality tables of this run are not to be trusted; run the same command again"
            )
        return (
            "the judge failed its calibration: it does not rank known-worse replies below "
            "better ones, so the quality tables of this run are not to be trusted, whatever "
            "their scores"
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Calibration | None:
        """A calibration saved by an earlier run of the same settings; None when there is none
        (or it cannot be read: the judge is then calibrated again)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                scores={k: (int(v[0]), int(v[1])) for k, v in data["scores"].items()},
                failed=dict(data["failed"]),
                threshold=float(data["threshold"]),
                unreachable=dict(data.get("unreachable") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def as_json(self) -> dict[str, Any]:
        return {
            "right": self.right,
            "pairs": self.pairs,
            "accuracy": self.accuracy,
            "threshold": self.threshold,
            "trusted": self.trusted,
            "complete": self.complete,
            "scores": {k: list(v) for k, v in self.scores.items()},
            "failed": self.failed,
            "unreachable": self.unreachable,
        }


def load_pairs() -> list[CalibrationPair]:
    """The shipped calibration set (redraft/data/judge_calibration.jsonl)."""
    text = resources.files("redraft").joinpath("data/judge_calibration.jsonl").read_text("utf-8")
    return [CalibrationPair.model_validate(json.loads(line)) for line in text.splitlines() if line]


async def calibrate(
    judge: BaseChatModel,
    *,
    method: str = "auto",
    pairs: list[CalibrationPair] | None = None,
    threshold: float = THRESHOLD,
) -> Calibration:
    """Score both replies of every pair; a pair whose judging failed counts as not right, one
    whose calls got no answer leaves the calibration incomplete."""
    pairs = pairs if pairs is not None else load_pairs()
    scores: dict[str, tuple[int, int]] = {}
    failed: dict[str, str] = {}
    unreachable: dict[str, str] = {}

    async def one(pair: CalibrationPair) -> None:
        if pair.dimension not in DIMENSIONS:
            raise ValueError(f"calibration pair {pair.id}: unknown dimension {pair.dimension!r}")
        context = JudgeContext(history=pair.history, persona=pair.persona, knowledge=pair.knowledge)
        try:
            better, worse = await asyncio.gather(
                judge_reply(judge, context, pair.better, method=method, agent=AGENT),
                judge_reply(judge, context, pair.worse, method=method, agent=AGENT),
            )
        except NO_ANSWER as exc:
            unreachable[pair.id] = f"{type(exc).__name__}: {exc}"[:300]
            return
        except Exception as exc:
            failed[pair.id] = f"{type(exc).__name__}: {exc}"[:300]
            return
        dimension = pair.dimension
        scores[pair.id] = (better.scores()[dimension], worse.scores()[dimension])

    await asyncio.gather(*(one(pair) for pair in pairs))
    return Calibration(scores=scores, failed=failed, threshold=threshold, unreachable=unreachable)
