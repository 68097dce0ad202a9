"""A router that learns from the LLM planner (planner=hybrid, `learn_routing` on).

The turns the router hands to the LLM planner are the ones it is unsure of; the planner's
choice on each is kept in the store as a labelled example: the route's numeric features (rule
scores, the classifier's intent probabilities, the dialogue signals; no message text, persona or
draft) and the aspects the planner chose. `redraft route train` fits one logistic regression per
learnable aspect on them and writes the weights to a small JSON file; the router then scores those
aspects with the learned model. Safety is not learned: it stays recall-first and rule-based, and
hybrid keeps it whenever the route is sensitive.

The learned probability says what the planner would choose, not how sure the router is: a planner
that picks personalization on two turns in three whatever the turn is noisy there, and asking it
again buys a coin flip. So each aspect is also fitted on `RESAMPLES` bootstrap resamples of the
decisions; the router's confidence in a learned aspect is how many of them agree with its
decision (`Learned.stability`). It is low only where more planner decisions could change the
decision (few or conflicting decisions near this turn), and that is when hybrid asks. An aspect
the planner chose on (nearly) every decision is learned as always chosen; one it (nearly) never
chose is left to the rules (recall first: a critic is not dropped on that evidence).
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

import numpy as np
from langgraph.store.base import BaseStore, SearchItem
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from redraft.config import Aspect, RefinerConfig
from redraft.errors import RedraftError

NAMESPACE = ("redraft", "routing", "decisions")
LEARNED_FILE = "router_learned.json"
LEARNABLE: tuple[Aspect, ...] = ("factuality", "personalization", "coherence")
MIN_PER_CLASS = 3
"""An aspect is learned as a regression when the planner chose it, and left it out, at least this
often."""
ALWAYS_AT = 0.9
"""Left out too rarely for a regression, an aspect chosen on at least this share of the decisions
(and at least `MIN_PER_CLASS` times) is learned as always chosen; otherwise not learned."""
RESAMPLES = 16
"""Bootstrap refits per aspect whose agreement is the router's confidence in a learned aspect."""
PAGE = 1000


class LearnedError(RedraftError, ValueError):
    """A learned-weights file that cannot be used; the message names the file."""


class Decision(BaseModel):
    """One LLM planner decision, as kept in the store."""

    features: dict[str, float]
    aspects: list[Aspect]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Coefficients(BaseModel):
    weights: list[float]
    bias: float


class AspectModel(BaseModel):
    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]
    positives: int
    negatives: int
    resampled: list[Coefficients] = Field(
        default_factory=list, description="The same fit on bootstrap resamples of the decisions."
    )

    # The model's and the resampled fits' coefficients stacked, and mean and scale as arrays.
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = PrivateAttr(None)

    def logit(self, features: dict[str, float], names: Sequence[str]) -> np.ndarray:
        """The logits of the model and of each resampled fit, in that order."""
        if self._arrays is None:
            fits: list[AspectModel | Coefficients] = [self, *self.resampled]
            self._arrays = (
                np.array([f.weights for f in fits]),
                np.array([f.bias for f in fits]),
                np.array(self.mean),
                np.array(self.scale),
            )
        weights, biases, mean, scale = self._arrays
        z = (np.array([features.get(name, 0.0) for name in names]) - mean) / scale
        return weights @ z + biases


class Learned(BaseModel):
    """Per-aspect weights over `features` (standardised with `mean` and `scale`)."""

    features: list[str]
    aspects: dict[Aspect, AspectModel]
    examples: int
    trained_at: datetime

    def score(self, aspect: Aspect, features: dict[str, float]) -> float | None:
        """The learned probability that the planner would choose `aspect`; None if not learned."""
        scored = self.score_and_stability(aspect, features)
        return None if scored is None else scored[0]

    def score_and_stability(
        self, aspect: Aspect, features: dict[str, float]
    ) -> tuple[float, float | None] | None:
        """The learned probability, and how settled the decision it gives is: 0 when half the
        resampled fits decide otherwise, 1 when none does (None for a file without resampled
        fits); None if `aspect` is not learned."""
        model = self.aspects.get(aspect)
        if model is None:
            return None
        logits = model.logit(features, self.features)
        probability = 1.0 / (1.0 + math.exp(-max(min(float(logits[0]), 30.0), -30.0)))
        if len(logits) == 1:
            return probability, None
        chosen = logits[0] >= 0.0
        agree = float(np.mean((logits[1:] >= 0.0) == chosen))
        return probability, max(0.0, 2.0 * agree - 1.0)


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


def fit(decisions: Sequence[Decision], resamples: int = RESAMPLES, seed: int = 0) -> Learned:
    """Per learnable aspect: a logistic regression when the planner chose it and left it out
    often enough, always chosen when it nearly always chose it, nothing otherwise;
    each also refitted on `resamples` bootstrap resamples (seeded: the same decisions give the
    same file)."""
    if not decisions:
        raise ValueError("no LLM planner decisions are stored yet (learn_routing must be on)")
    names = sorted({name for d in decisions for name in d.features})
    x = np.array([[d.features.get(n, 0.0) for n in names] for d in decisions], dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(decisions), len(decisions)) for _ in range(resamples)]
    aspects: dict[Aspect, AspectModel] = {}
    for aspect in LEARNABLE:
        y = np.array([aspect in d.aspects for d in decisions])
        positives = int(y.sum())
        negatives = len(y) - positives
        regression = negatives >= MIN_PER_CLASS
        if positives < MIN_PER_CLASS or not (regression or positives / len(y) >= ALWAYS_AT):
            continue  # the rules keep deciding (recall first: nothing is dropped on this)
        main, *resampled = (
            _coefficients(z[rows], y[rows], regression)
            for rows in [np.arange(len(decisions)), *draws]
        )
        aspects[aspect] = AspectModel(
            weights=main.weights,
            bias=main.bias,
            mean=mean.tolist(),
            scale=scale.tolist(),
            positives=positives,
            negatives=negatives,
            resampled=resampled,
        )
    return Learned(
        features=names, aspects=aspects, examples=len(decisions), trained_at=datetime.now(UTC)
    )


def _coefficients(z: np.ndarray, y: np.ndarray, regression: bool) -> Coefficients:
    """A logistic regression on (z, y); the smoothed rate (no weights) when it is not to be a
    regression or `y` has one class only (a resample can)."""
    if not regression or y.all() or not y.any():
        rate = (y.sum() + 1.0) / (len(y) + 2.0)
        return Coefficients(weights=[0.0] * z.shape[1], bias=math.log(rate / (1.0 - rate)))
    from sklearn.linear_model import LogisticRegression

    # Unweighted: the router should predict what the planner would choose; balancing the
    # classes makes a planner that nearly always chooses an aspect look undecided.
    model = LogisticRegression(C=1.0, max_iter=2000).fit(z, y)
    return Coefficients(weights=model.coef_[0].tolist(), bias=float(model.intercept_[0]))


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
            | ({} if m.negatives >= MIN_PER_CLASS else {"always": True})
            for a, m in learned.aspects.items()
        },
        "not_learned": [a for a in LEARNABLE if a not in learned.aspects],
    }
