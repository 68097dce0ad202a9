"""A router that learns from the LLM planner (planner=hybrid, `learn_routing` on).

The turns the router hands to the LLM planner are the ones it is unsure of; the planner's
choice on each is kept in the store as a labelled example: the route's numeric features (rule
scores, the classifier's intent probabilities, the dialogue signals; no message text, persona or
draft) and the aspects the planner chose. `redraft route train` fits one logistic regression per
learnable aspect on them and writes the weights to a small JSON file; the router then scores those
aspects with the learned model. Safety is not learned: it stays recall-first and rule-based, and
hybrid keeps it whenever the route is sensitive.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.store.base import BaseStore, SearchItem
from pydantic import BaseModel, Field, ValidationError

from redraft.config import Aspect, RefinerConfig
from redraft.errors import RedraftError

NAMESPACE = ("redraft", "routing", "decisions")
LEARNED_FILE = "router_learned.json"
LEARNABLE: tuple[Aspect, ...] = ("factuality", "personalization", "coherence")
MIN_PER_CLASS = 3
"""An aspect is learned only when the planner chose it, and left it out, at least this often."""
PAGE = 1000


class LearnedError(RedraftError, ValueError):
    """A learned-weights file that cannot be used; the message names the file."""


class Decision(BaseModel):
    """One LLM planner decision, as kept in the store."""

    features: dict[str, float]
    aspects: list[Aspect]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class AspectModel(BaseModel):
    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]
    positives: int
    negatives: int


class Learned(BaseModel):
    """Per-aspect weights over `features` (standardised with `mean` and `scale`)."""

    features: list[str]
    aspects: dict[Aspect, AspectModel]
    examples: int
    trained_at: datetime

    def score(self, aspect: Aspect, features: dict[str, float]) -> float | None:
        """The learned probability that the planner would choose `aspect`; None if not learned."""
        model = self.aspects.get(aspect)
        if model is None:
            return None
        logit = model.bias
        for name, weight, mean, scale in zip(
            self.features, model.weights, model.mean, model.scale, strict=True
        ):
            logit += weight * (features.get(name, 0.0) - mean) / scale
        return 1.0 / (1.0 + math.exp(-max(min(logit, 30.0), -30.0)))


def learned_path(config: RefinerConfig) -> Path:
    return config.router_learned_file or config.home / LEARNED_FILE


def load_learned(config: RefinerConfig) -> Learned | None:
    """The learned weights, when the file exists; a broken file raises LearnedError."""
    path = learned_path(config)
    if not path.exists():
        return None
    try:
        return Learned.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        raise LearnedError(
            f"{path}: not a learned-router file ({exc}); run `redraft route train` again"
        ) from exc


async def record_decision(
    store: BaseStore, config: RefinerConfig, features: dict[str, float], aspects: Sequence[str]
) -> None:
    """Keep one planner decision (features and aspects only) when `learn_routing` is on."""
    if not config.learn_routing:
        return
    decision = Decision(features=features, aspects=[a for a in aspects if a in LEARNABLE])
    await store.aput(NAMESPACE, uuid.uuid4().hex, decision.model_dump(mode="json"), index=False)


async def stored_decisions(store: BaseStore, config: RefinerConfig) -> tuple[list[Decision], int]:
    """The newest `max_routing_decisions` decisions, and how many older ones were deleted."""
    items: list[SearchItem] = []
    while True:
        page = await store.asearch(NAMESPACE, limit=PAGE, offset=len(items))
        items += page
        if len(page) < PAGE:
            break
    items.sort(key=lambda item: item.value.get("at", ""), reverse=True)
    kept, dropped = items[: config.max_routing_decisions], items[config.max_routing_decisions :]
    for item in dropped:
        await store.adelete(NAMESPACE, item.key)
    return [Decision.model_validate(item.value) for item in kept], len(dropped)


def fit(decisions: Sequence[Decision]) -> Learned:
    """One logistic regression per learnable aspect with enough of both answers."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if not decisions:
        raise ValueError("no LLM planner decisions are stored yet (learn_routing must be on)")
    names = sorted({name for d in decisions for name in d.features})
    x = np.array([[d.features.get(n, 0.0) for n in names] for d in decisions], dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    aspects: dict[Aspect, AspectModel] = {}
    for aspect in LEARNABLE:
        y = np.array([aspect in d.aspects for d in decisions])
        positives = int(y.sum())
        if min(positives, len(y) - positives) < MIN_PER_CLASS:
            continue
        # Unweighted: the router should predict what the planner would choose; balancing the
        # classes makes a planner that nearly always chooses an aspect look undecided (and the
        # router then hands hybrid more turns, measured in BENCHMARKS.md).
        model = LogisticRegression(C=1.0, max_iter=2000).fit(z, y)
        aspects[aspect] = AspectModel(
            weights=model.coef_[0].tolist(),
            bias=float(model.intercept_[0]),
            mean=mean.tolist(),
            scale=scale.tolist(),
            positives=positives,
            negatives=len(y) - positives,
        )
    return Learned(
        features=names, aspects=aspects, examples=len(decisions), trained_at=datetime.now(UTC)
    )


def write_learned(learned: Learned, path: Path) -> None:
    """Write atomically: a router loading meanwhile reads the old file or the new, whole. The
    partial file's name is this writer's own (several server workers may retrain at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f"{path.suffix}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    partial.write_text(json.dumps(learned.model_dump(mode="json"), indent=1) + "\n")
    partial.replace(path)


def summary(learned: Learned) -> dict[str, Any]:
    return {
        "examples": learned.examples,
        "learned": {
            a: {"chosen": m.positives, "not_chosen": m.negatives}
            for a, m in learned.aspects.items()
        },
        "not_learned": [a for a in LEARNABLE if a not in learned.aspects],
    }
