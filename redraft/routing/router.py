"""The embedding router: picks a turn's critics in milliseconds on the CPU, with no LLM call.

One sentence embedding of the user's latest message feeds a logistic-regression classifier
trained (at load, in well under a second) on the labelled examples of `examples.py`: chit-chat,
knowledge, task, personal, or sensitive in one of PENGUIN's seven domains. Its probabilities are
combined with what the request itself shows — knowledge passages, persona facts and how close
they are to the query, earlier turns, the draft's numbers, dates and names — into a score per
aspect; an aspect is chosen at a score of 0.5 or more.

Coherence reads the dialogue, not only the last message's embedding: a message that leans on
what was said (follow-up words, an answer to the assistant's question, a short elliptical
message) or a draft whose days, times and numbers differ from the dialogue's calls for it.
Safety: a query is sensitive when the sensitive labels together reach `SENSITIVE_AT` and it has
a word of distress or risk, tells the user's own circumstances or asks a decision about them (a
calm request with personal stakes: "My manager put me on a performance plan. How should I
respond?", "Should I sell my crypto now?") or comes from a user whose known facts tell of
distress or risk (PENGUIN's personalised safety), or the classifier is sure without any of
these; crisis words always count.
An earlier sensitive turn keeps the conversation sensitive only while the new message continues
it; an earlier crisis always does.

Critics from user code are scored too when `route` is given them: by their `RouterScoring`
(closeness to its examples, its function, or both). A critic without one is chosen whenever
the turn needs any other critic (never for small talk alone): it is not silently left out.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field

from redraft.config import Aspect, Domain, RefinerConfig, RoutingExample
from redraft.embeddings import EXTRA_HINT, EmbeddingsNotInstalledError, get_embeddings
from redraft.routing.examples import load_examples
from redraft.routing.learning import LEARNABLE, Learned, learned_path, load_learned
from redraft.routing.signals import (
    answers_question,
    asks_for_choice,
    crisis_cue,
    declined_then,
    discloses_self,
    distress_cue,
    draft_against_history,
    factual_claims,
    follow_up_cue,
    is_elliptical,
    overlap,
    own_loss,
    own_situation,
    personal_stakes,
    refers_back,
    signs_off,
    switches_topic,
    vulnerability,
)
from redraft.state import DOMAINS

if TYPE_CHECKING:
    from redraft.agents.critic import Critic, RouterScoring

ASPECTS: tuple[Aspect, ...] = ("factuality", "personalization", "coherence", "safety")
"""The aspects the router scores by its own rules (the built-in critics'), on every turn."""
CHOSEN_AT = 0.5
# Summed probability of the sensitive labels at which a query counts as sensitive. Below 0.5 on
# purpose: missing a sensitive query costs more than one extra safety check.
SENSITIVE_AT = 0.4
# Without a word of distress or risk, the user's own circumstances or a decision about them, the
# classifier must be this sure: a study, work or travel question is not sensitive for sharing the
# topic of sensitive ones.
SENSITIVE_PLAIN_AT = 0.85
# A death the user tells as their own loss counts as at least this sensitive, whatever the
# classifier reads in a calm sentence ("Our dog was put down on Saturday.").
LOSS_AT = 0.5
# Closeness (cosine) of the new message to an earlier sensitive turn at which it continues it.
CONTINUES_AT = 0.35
# A request for a choice that turns on the user's taste: its evidence for personalization, in
# full once the closest known fact is this close to the request (cosine; none below the first).
CHOICE_EVIDENCE = 0.65
CHOICE_BEARS_ON = (0.05, 0.2)
CONTEXT_TURNS = 3
# Inverse regularisation of the classifier (scikit-learn's C).
CLASSIFIER_C = 10.0
CACHE_SIZE = 4096
SENSITIVE_PREFIX = "sensitive:"


class Route(BaseModel):
    """The router's decision for one turn."""

    aspects: list[str] = Field(description="Chosen aspects, highest score first.")
    scores: dict[str, float] = Field(description="Every aspect's score, 0–1.")
    sensitive: bool
    domain: Domain | None = Field(description="Most likely domain when sensitive, else null.")
    reasons: dict[str, str] = Field(description="One line per aspect.")
    domain_scores: dict[Domain, float] = Field(
        default_factory=dict, description="All seven domains, ranked (sums to 1)."
    )
    features: dict[str, float] = Field(
        default_factory=dict,
        description="The numbers the decision was made from (no text): what a learned router "
        "is trained on.",
    )

    learned_confidence: dict[str, float] = Field(
        default_factory=dict,
        description="Aspects scored by the learned router: how settled their decision is (the "
        "share of its resampled fits that agree, 0 at half, 1 at all); in `confidence` it "
        "stands for the distance from 0.5.",
    )

    @property
    def confidence(self) -> float:
        """How clear the least clear aspect is: 0 at a score of 0.5, 1 at 0 or 1; a learned
        aspect is as clear as its decision is settled (its score is what the LLM planner would
        choose, and a planner that chooses at random near this turn leaves it near 0.5)."""
        return min(
            self.learned_confidence.get(aspect, abs(score - CHOSEN_AT) * 2)
            for aspect, score in self.scores.items()
        )


class LoadTimes(BaseModel):
    model_s: float
    examples_s: float
    examples: int


def noisy_or(*evidence: float) -> float:
    """Probability that at least one independent piece of evidence holds."""
    remaining = 1.0
    for value in evidence:
        remaining *= 1.0 - min(max(value, 0.0), 1.0)
    return 1.0 - remaining


def ramp(value: float, low: float, high: float) -> float:
    """0 below `low`, 1 above `high`, linear between."""
    return min(max((value - low) / (high - low), 0.0), 1.0)


def own_sensitivity(
    text: str, p_sensitive: float, vulnerable: str | None = None
) -> tuple[float, str]:
    """How sensitive a message is by itself, and why: a crisis counts in full; without a word of
    distress or risk, the user's own circumstances or a decision about them, and from a user not
    known to be struggling (`vulnerable`: the persona fact that says so), the classifier's
    probability is scaled so that `SENSITIVE_PLAIN_AT` lands on `SENSITIVE_AT`."""
    crisis = crisis_cue(text)
    if crisis:
        return 1.0, f"crisis words {crisis!r}"
    loss = own_loss(text)
    if loss:
        return max(p_sensitive, LOSS_AT), f"the user's own loss {loss!r}"
    distress = distress_cue(text)
    if distress:
        return p_sensitive, f"distress or risk words {distress!r}"
    situation = own_situation(text)
    if situation:
        return p_sensitive, f"the user's own circumstances {situation[:60]!r}"
    stakes = personal_stakes(text)
    if stakes:
        return p_sensitive, f"a decision about the user's own life {stakes!r}"
    if vulnerable:
        return p_sensitive, f"a user known to be struggling {vulnerable[:60]!r}"
    return p_sensitive * SENSITIVE_AT / SENSITIVE_PLAIN_AT, "no words of distress or stakes"


def safety_score(p_sensitive: float) -> float:
    """Maps the sensitive probability so that `SENSITIVE_AT` lands on the 0.5 threshold."""
    if p_sensitive < SENSITIVE_AT:
        return 0.5 * p_sensitive / SENSITIVE_AT
    return 0.5 + 0.5 * (p_sensitive - SENSITIVE_AT) / (1.0 - SENSITIVE_AT)


class Router:
    """Routes turns; thread-safe. `load()` embeds the examples and trains the classifier once
    (it is called by the first `route()` otherwise)."""

    def __init__(
        self,
        embeddings: Embeddings,
        examples: Sequence[RoutingExample],
        learned: Learned | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.examples = list(examples)
        self.learned = learned
        self.load_times: LoadTimes | None = None
        self._load_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Texts being embedded right now (e.g. by the prefetch during the draft): a route that
        # needs one waits for it instead of embedding it a second time.
        self._embedding: dict[str, Future[np.ndarray]] = {}
        self._labels: list[str] = []
        self._weights: np.ndarray | None = None
        self._bias: np.ndarray | None = None

    # ── loading ─────────────────────────────────────────────────────────────────────────

    def load(self) -> LoadTimes:
        """Load the embedding model, embed the examples and fit the classifier (once)."""
        if self.load_times is not None:
            return self.load_times
        with self._load_lock:
            if self.load_times is None:
                self.load_times = self._fit()
        return self.load_times

    def with_learned(self, learned: Learned | None) -> Router:
        """This router with other learned weights: it shares the loaded model, classifier and
        vector cache, so retrained weights are swapped in without loading anything."""
        router = copy.copy(self)
        router.learned = learned
        return router

    def _fit(self) -> LoadTimes:
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as exc:
            raise EmbeddingsNotInstalledError(
                f"the router's classifier needs scikit-learn: run `{EXTRA_HINT}`"
            ) from exc

        warm_up = getattr(self.embeddings, "warm_up", None)
        model_s = warm_up() if callable(warm_up) else 0.0
        started = time.perf_counter()
        vectors = np.asarray(self.embeddings.embed_documents([e.text for e in self.examples]))
        self.embeddings.embed_query("warm-up")  # the first single-text call is slow
        labels = [
            SENSITIVE_PREFIX + e.domain if e.label == "sensitive" and e.domain else e.label
            for e in self.examples
        ]
        classifier = LogisticRegression(C=CLASSIFIER_C, max_iter=2000, class_weight="balanced")
        classifier.fit(vectors, labels)
        self._labels = [str(label) for label in classifier.classes_]
        self._weights = classifier.coef_.T.astype(np.float32)
        self._bias = classifier.intercept_.astype(np.float32)
        return LoadTimes(
            model_s=model_s,
            examples_s=time.perf_counter() - started,
            examples=len(self.examples),
        )

    # ── embeddings and classifier ───────────────────────────────────────────────────────

    def clear_cache(self) -> None:
        """Forget cached vectors (benchmarks measure decisions that embed every text)."""
        with self._cache_lock:
            self._cache.clear()

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors for `texts`; persona facts and earlier turns come from the cache, and a text
        another thread is embedding is waited for, not embedded twice."""
        with self._cache_lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for text in found:
                self._cache.move_to_end(text)
            missing = [t for t in texts if t not in found]
            waiting = {t: self._embedding[t] for t in missing if t in self._embedding}
            mine = list(dict.fromkeys(t for t in missing if t not in waiting))
            for text in mine:
                self._embedding[text] = Future()
        if mine:
            try:
                vectors = np.asarray(self.embeddings.embed_documents(mine), dtype=np.float32)
            except BaseException as exc:
                with self._cache_lock:
                    for text in mine:
                        self._embedding.pop(text).set_exception(exc)
                raise
            with self._cache_lock:
                for text, vector in zip(mine, vectors, strict=True):
                    found[text] = self._cache[text] = vector
                    self._embedding.pop(text).set_result(vector)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        for text, pending in waiting.items():
            found[text] = pending.result()
        return found

    def _probabilities(self, vectors: np.ndarray) -> np.ndarray:
        assert self._weights is not None and self._bias is not None
        logits = vectors @ self._weights + self._bias
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=-1, keepdims=True)

    def classify(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """The classifier's label probabilities for each text (for inspection and tests)."""
        self.load()
        vectors = self._embed(texts)
        probabilities = self._probabilities(np.stack([vectors[t] for t in texts]))
        return [dict(zip(self._labels, map(float, row), strict=True)) for row in probabilities]

    # ── routing ─────────────────────────────────────────────────────────────────────────

    def prefetch(self, messages: Sequence[dict[str, str]], persona: Sequence[str] = ()) -> None:
        """Embed what `route` will embed for this turn. Everything it embeds is known before
        the draft (the draft adds only cheap text signals), so the graph runs this while the
        draft is written and the plan finds the vectors cached."""
        self.load()
        self._embed(embedded_texts(messages, persona))

    def route(
        self,
        messages: Sequence[dict[str, str]],
        *,
        persona: Sequence[str] = (),
        knowledge: Sequence[str] = (),
        draft: str | None = None,
        critics: Sequence[Critic] = (),
    ) -> Route:
        """Score every aspect for the turn whose latest user message is the query: the
        built-in ones, and those of `critics` that are not (see the module's docstring)."""
        self.load()
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        query = messages[last]["content"]
        earlier = messages[:last]
        earlier_users = [m["content"] for m in earlier if m["role"] == "user"][-CONTEXT_TURNS:]
        replies = [m["content"] for m in earlier if m["role"] == "assistant"]
        disclosures = [text for text in earlier_users if discloses_self(text)]
        known = [*persona, *disclosures]

        texts = embedded_texts(messages, persona)
        vectors = self._embed(texts)
        probabilities = self._probabilities(np.stack([vectors[t] for t in texts]))
        intents = {text: self._intent(row) for text, row in zip(texts, probabilities, strict=True)}
        intent = intents[query]
        small_talk = intent["chitchat"]

        scores: dict[str, float] = {}
        reasons: dict[str, str] = {}
        signals: dict[str, float] = {}
        scores["coherence"], reasons["coherence"], leans = self._coherence(
            query, earlier_users, replies, draft, small_talk, vectors, signals
        )
        safety, sensitive, domain, domain_scores, safety_reason = self._safety(
            query, earlier_users, persona, intents, vectors, leans
        )
        scores["factuality"], reasons["factuality"] = self._factuality(intent, knowledge, draft)
        scores["personalization"], reasons["personalization"] = self._personalization(
            query, known, intent, vectors
        )
        scores["safety"], reasons["safety"] = safety, safety_reason
        features = {
            **{f"rule_{aspect}": scores[aspect] for aspect in ASPECTS},
            **{name: intent[name] for name in ("chitchat", "knowledge", "task", "personal")},
            "sensitive": intent["sensitive"],
            "claims": min(len(factual_claims(draft)), 5) / 5 if draft else 0.0,
            "passages": float(bool(knowledge)),
            "known": min(len(known), 5) / 5,
            "words": min(len(query.split()), 40) / 40,
            "choice": float(asks_for_choice(query) is not None),
            **signals,
        }
        learned_confidence: dict[str, float] = {}
        if self.learned is not None:
            for aspect in LEARNABLE:
                learned = self.learned.score_and_stability(aspect, features)
                if learned is None:
                    continue
                scores[aspect], settled = learned
                reasons[aspect] += f"; learned from the LLM planner: {scores[aspect]:.2f}"
                if settled is not None:
                    learned_confidence[aspect] = round(settled, 3)
                    reasons[aspect] += f" (settled {settled:.2f})"
        scored = {c.aspect: c.router for c in critics if c.router is not None}
        own = self._critic_scores(scored, query, messages, draft)
        for name, (score, reason) in own.items():
            scores[name], reasons[name] = score, reason
        order = [*ASPECTS, *(a for a in own if a not in ASPECTS)]
        scores = {a: round(scores[a], 3) for a in order}
        # Safety follows the sensitive flag exactly (its score is only rounded around 0.5),
        # unless a critic of its own scores it.
        chosen = sorted(
            (
                a
                for a in scores
                if (sensitive if a == "safety" and a not in own else scores[a] >= CHOSEN_AT)
            ),
            key=lambda a: -scores[a],
        )
        riders = [c.aspect for c in critics if c.router is None and c.aspect not in scores]
        for name in riders:
            scores[name] = 1.0 if chosen else 0.0
            reasons[name] = "no router scoring: checks every turn that needs another critic" + (
                "" if chosen else " (none does)"
            )
        if chosen:
            chosen += riders
        return Route(
            aspects=chosen,
            scores=scores,
            sensitive=sensitive,
            domain=domain,
            reasons={a: reasons[a] for a in scores},
            domain_scores=domain_scores,
            features={name: round(float(value), 4) for name, value in features.items()},
            learned_confidence=learned_confidence,
        )

    def _critic_scores(
        self,
        critics: dict[str, RouterScoring],
        query: str,
        messages: Sequence[dict[str, str]],
        draft: str | None,
    ) -> dict[str, tuple[float, str]]:
        """Score and reason of each critic with `RouterScoring`: the closeness of the query to
        its nearest example (0.5 at `similar_at`), its function's score, the higher of both."""
        examples = [e for scoring in critics.values() for e in scoring.examples]
        vectors = self._embed(list(dict.fromkeys([query, *examples]))) if examples else {}
        scored: dict[str, tuple[float, str]] = {}
        for name, scoring in critics.items():
            values, parts = [], []
            if scoring.examples:
                similarity = max(float(vectors[query] @ vectors[e]) for e in scoring.examples)
                at = scoring.similar_at
                values.append(ramp(similarity, at - 0.25, at + 0.25))
                parts.append(f"closest example {similarity:.2f} (chosen from {at:g})")
            if scoring.score is not None:
                value = float(scoring.score(query, messages, draft))
                value = 0.0 if np.isnan(value) else min(max(value, 0.0), 1.0)
                values.append(value)
                parts.append(f"its scoring function {value:.2f}")
            scored[name] = (max(values), "; ".join(parts))
        return scored

    def _intent(self, row: np.ndarray) -> dict[str, Any]:
        """Collapses the classifier's labels: the four plain intents, `sensitive` (their sum
        over domains) and `domains` (the sensitive mass per domain, normalised)."""
        plain = {"chitchat": 0.0, "knowledge": 0.0, "task": 0.0, "personal": 0.0}
        domains = dict.fromkeys(DOMAINS, 0.0)
        for label, p in zip(self._labels, row, strict=True):
            if label.startswith(SENSITIVE_PREFIX):
                domains[label.removeprefix(SENSITIVE_PREFIX)] += float(p)
            else:
                plain[label] += float(p)
        sensitive = sum(domains.values())
        if sensitive > 0:
            domains = {d: p / sensitive for d, p in domains.items()}
        return {**plain, "sensitive": sensitive, "domains": domains}

    def _safety(
        self,
        query: str,
        earlier_users: list[str],
        persona: Sequence[str],
        intents: dict[str, dict[str, Any]],
        vectors: dict[str, np.ndarray],
        leans: bool,
    ) -> tuple[float, bool, Domain | None, dict[Domain, float], str]:
        intent = intents[query]
        vulnerable = vulnerability(persona)
        # After "Maybe later." the rest is the request: the put-off is no circumstance of the user.
        p, why = own_sensitivity(declined_then(query) or query, intent["sensitive"], vulnerable)
        if leans and not (crisis_cue(query) or distress_cue(query)):
            # "Where should I stay?" has no topic of its own: the turn it continues decides.
            p, why = 0.0, "a follow-up without words of distress"
        # An earlier sensitive turn carries over only while the new message continues it (it
        # leans on the dialogue or stays on that turn's topic); a crisis always does.
        carried, carried_why = 0.0, ""
        switched = switches_topic(query)
        for text in earlier_users:
            earlier, earlier_why = own_sensitivity(text, intents[text]["sensitive"], vulnerable)
            if earlier_why.startswith("crisis"):
                value = earlier
            elif switched or earlier < SENSITIVE_AT:
                continue
            elif leans or float(vectors[query] @ vectors[text]) >= CONTINUES_AT:
                value = earlier * (1.0 - intent["chitchat"])
            else:
                continue
            if value > carried:
                carried, carried_why = value, earlier_why
        from_context = carried > p
        if from_context:
            p, why = carried, carried_why
        sensitive = p >= SENSITIVE_AT
        # Domain: the query votes with weight 1; each earlier user turn (the user's own account
        # of the situation) with its sensitive probability; each persona fact with that times
        # its closeness to the query. Without the closeness, standing facts such as "Mental
        # health: anxiety" pull every question towards Health.
        votes = dict(intent["domains"])
        weights = {t: intents[t]["sensitive"] for t in earlier_users}
        for fact in persona:
            closeness = ramp(float(vectors[query] @ vectors[fact]), 0.1, 0.5)
            weights.setdefault(fact, intents[fact]["sensitive"] * closeness)
        for text, weight in weights.items():
            for d, share in intents[text]["domains"].items():
                votes[d] += weight * share
        total = sum(votes.values()) or 1.0
        ranked = sorted(votes.items(), key=lambda item: -item[1])
        domain_scores: dict[Domain, float] = {d: round(v / total, 3) for d, v in ranked}
        (top, top_share), (second, second_share) = ranked[0], ranked[1]
        top_share, second_share = top_share / total, second_share / total
        if not sensitive:
            reason = f"not a sensitive request (sensitive {p:.2f} < {SENSITIVE_AT}; {why})"
            return safety_score(p), False, None, domain_scores, reason
        where = "an earlier turn of the conversation is" if from_context else "the request is"
        reason = f"{where} sensitive ({p:.2f}; {why}): most likely {top} ({top_share:.2f})"
        if top_share - second_share < 0.15:
            reason += f", or {second} ({second_share:.2f}); safety runs either way"
        return safety_score(p), True, top, domain_scores, reason

    @staticmethod
    def _factuality(
        intent: dict[str, Any], knowledge: Sequence[str], draft: str | None
    ) -> tuple[float, str]:
        claims = factual_claims(draft) if draft else []
        score = noisy_or(
            1.0 - 0.55 ** len(claims),  # each number, date or name in the draft
            intent["knowledge"],  # a request for facts gets facts
            0.6 if knowledge else 0.0,  # evidence was given: the reply should be grounded in it
        ) * (1.0 - intent["chitchat"])
        parts = []
        if knowledge:
            parts.append(f"{len(knowledge)} knowledge passage(s) to check against")
        if claims:
            parts.append("the draft states " + ", ".join(claims[:4]))
        if intent["knowledge"] >= 0.5:
            parts.append("the user asks for facts")
        if intent["chitchat"] >= 0.5:
            parts.append("small talk")
        if not parts:
            parts.append("no facts asked for or stated" if draft else "no facts asked for")
        return score, "; ".join(parts)

    @staticmethod
    def _personalization(
        query: str, known: list[str], intent: dict[str, Any], vectors: dict[str, np.ndarray]
    ) -> tuple[float, str]:
        if not known:
            return 0.0, "nothing is known about the user"
        need = noisy_or(intent["personal"], 0.7 * intent["sensitive"])
        similarity = max(
            (float(vectors[query] @ vectors[f]) for f in known if f in vectors), default=0.0
        )
        # A request for a choice that turns on the user's taste ("What should I read next?")
        # needs the known facts whenever one of them bears on it, however the classifier reads
        # the request (as a task, often): the cue does not depend on the examples.
        choice = asks_for_choice(query)
        bears = CHOICE_EVIDENCE * ramp(similarity, *CHOICE_BEARS_ON) if choice else 0.0
        score = noisy_or(need, 0.8 * ramp(similarity, 0.2, 0.5), bears) * (1.0 - intent["chitchat"])
        closest = max(
            known, key=lambda f: float(vectors[query] @ vectors[f]) if f in vectors else 0
        )
        if intent["personal"] >= 0.5:
            reason = "the answer depends on who the user is"
        elif bears >= CHOSEN_AT:
            reason = f"asks for a choice that turns on the user's taste ({choice!r})"
        elif intent["sensitive"] >= SENSITIVE_AT:
            reason = "advice on a sensitive matter should fit the user"
        else:
            reason = "the request does not depend much on the user"
        reason += f"; {len(known)} known fact(s), closest: {closest[:60]!r} ({similarity:.2f})"
        return score, reason

    @staticmethod
    def _coherence(
        query: str,
        earlier_users: list[str],
        replies: list[str],
        draft: str | None,
        small_talk: float,
        vectors: dict[str, np.ndarray],
        signals: dict[str, float],
    ) -> tuple[float, str, bool]:
        """Coherence, and whether the message leans on the dialogue's topic (safety reads that:
        an earlier sensitive turn carries over); the dialogue signals go to `signals`."""
        signals["history"] = float(bool(replies))
        if not replies:
            return 0.0, "first turn: no earlier reply to stay consistent with", False
        history = " ".join([*earlier_users, *replies])
        if switches_topic(query):
            return 0.1 * (1.0 - small_talk), "the user changes the topic", False
        if signs_off(query) and not (draft and draft_against_history(draft, history)[1]):
            return 0.1 * (1.0 - small_talk), "the user thanks or says goodbye", False
        cue = follow_up_cue(query)
        answers = answers_question(query, replies[-1])
        # Words of the assistant's last reply taken up again ("Do I need the crampons ...").
        taken_up = overlap(query, replies[-1])
        elliptical = is_elliptical(query, history)
        topic = max((float(vectors[query] @ vectors[t]) for t in earlier_users), default=0.0)
        shared, by_kind = draft_against_history(draft, history) if draft else ([], {})
        leans = bool(cue or answers or elliptical)
        # "Maybe later. What's the weather in Crete?" answers the assistant's question by putting
        # it off: the topic carries over only if what follows leans on the dialogue by itself.
        rest = declined_then(query)
        on_topic = (
            leans if rest is None else bool(refers_back(rest) or is_elliptical(rest, history))
        )
        signals.update(
            cue=float(bool(cue)),
            answers=float(answers),
            elliptical=float(elliptical),
            topic=topic,
            taken_up=taken_up,
            shared=float(bool(shared)),
        )
        # A changed day or time is worth a check on any turn; a changed number only on a turn
        # that stays with the dialogue (a new question brings numbers of its own).
        stays = leans or shared or topic >= 0.2
        changed = [
            v for kind, values in by_kind.items() if kind != "number" or stays for v in values
        ]
        signals["changed"] = float(bool(changed))
        score = noisy_or(
            0.3,  # a conversation is under way
            0.6 if cue else 0.0,
            0.5 if answers else 0.0,
            0.5 if elliptical else 0.0,
            0.6 * ramp(topic, 0.25, 0.6),
            0.5 * ramp(taken_up, 0.0, 0.3),
            0.5 if shared else 0.0,
            0.7 if changed else 0.0,
        )
        # Small talk needs no consistency check, unless it leans on what was said
        # ("Great, so I can go Monday morning?").
        if not (leans or changed):
            score *= 1.0 - small_talk
        parts = [f"{len(replies)} earlier repl{'y' if len(replies) == 1 else 'ies'}"]
        if cue:
            parts.append(f"follows up ({cue!r})")
        if answers:
            parts.append("answers the assistant's question")
        if elliptical:
            parts.append("short and leans on the dialogue")
        if changed:
            parts.append("the draft changes " + ", ".join(dict.fromkeys(changed[:3])))
        elif shared:
            parts.append("the draft builds on " + ", ".join(dict.fromkeys(shared[:3])))
        parts.append(f"same topic {topic:.2f}, words of the last reply {taken_up:.2f}")
        if small_talk >= 0.5:
            parts.append("small talk")
        if rest is not None and not on_topic:
            parts.append("puts off the assistant's question and asks something else")
        return score, "; ".join(parts), on_topic


_routers: dict[tuple[Any, ...], Router] = {}
_routers_lock = threading.Lock()


def embedded_texts(messages: Sequence[dict[str, str]], persona: Sequence[str]) -> list[str]:
    """The texts a turn's routing embeds: the latest user message, the user's recent earlier
    messages and the persona facts."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    earlier_users = [m["content"] for m in messages[:last] if m["role"] == "user"]
    return list(
        dict.fromkeys([messages[last]["content"], *earlier_users[-CONTEXT_TURNS:], *persona])
    )


def router_key(config: RefinerConfig) -> tuple[Any, ...]:
    path: Path | None = config.extra_examples_file
    mtime = path.stat().st_mtime_ns if path is not None and path.exists() else None
    learned = learned_path(config)  # a retrained file is picked up by the next get_router
    learned_mtime = learned.stat().st_mtime_ns if learned.exists() else None
    return (
        config.embeddings,
        config.router_int8,
        config.base_url,
        tuple(e.model_dump_json() for e in config.extra_examples),
        str(path) if path else None,
        mtime,
        str(learned),
        learned_mtime,
    )


def get_router(config: RefinerConfig) -> Router:
    """The process's router for this config (one per embeddings choice and example set).

    Nothing is loaded here: the model loads on the first `route()`, or on `load()`. When only
    the learned weights changed (`redraft route train`, or the server's periodic retrain), the
    loaded router is reused with the new ones.
    """
    key = router_key(config)
    with _routers_lock:
        router = _routers.get(key)
        if router is None:
            learned = load_learned(config)
            # Same router, an older learned file (the key's last part is the file's mtime).
            older = [k for k in _routers if k[:-1] == key[:-1]]
            loaded = next((_routers[k] for k in older if _routers[k].load_times), None)
            for stale in older:
                del _routers[stale]
            if loaded is not None:
                router = loaded.with_learned(learned)
            else:
                router = Router(router_embeddings(config), load_examples(config), learned)
            _routers[key] = router
        return router


def router_embeddings(config: RefinerConfig) -> Embeddings:
    """The int8 local model when configured (and installed), else the config's embeddings."""
    embeddings = get_embeddings(config)  # raises the clear error when the extra is missing
    if config.embeddings == "local" and config.router_int8:
        from redraft.routing.encoder import Int8LocalEmbeddings

        return Int8LocalEmbeddings(threads=config.embedding_threads)
    return embeddings
