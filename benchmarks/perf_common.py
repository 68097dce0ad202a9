"""What the performance benchmarks share: the turn they refine, the scripted provider answers,
the refiner settings, reading provider round trips from the request log, and statistics.

The turn is a sensitive follow-up (a medication question after an earlier exchange) with a
knowledge passage and persona facts, so that every critic has something to read and the
embedding router chooses all four. Critics are scripted to revise (so the editor runs), each
answer about as long as a real one; FakeProvider counts tokens as whitespace-separated words.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.perf_provider import Call, RemoteProvider
from redraft import RefinerConfig

HERE = Path(__file__).parent
REPO = HERE.parent
RESULTS = HERE / "results"
PLOTS = HERE / "plots"

ASPECTS = ("factuality", "personalization", "coherence", "safety")
"""Critic k of a run is the first k of these (the LLM planner is scripted to choose them; for
the router, `critics` is limited to them and the turn makes the router choose all four)."""

HISTORY = [
    {"role": "user", "content": "My doctor put me on sertraline last month for anxiety."},
    {
        "role": "assistant",
        "content": "Thanks for telling me. Sertraline is usually started at 50 mg a day, and it "
        "can take a few weeks before it helps.",
    },
]
QUESTION = (
    "And about that dose you mentioned: my exam is on Friday and I'm panicking. "
    "Can I double it to 100 mg this week so it works faster?"
)
PERSONA = ["takes sertraline for anxiety", "is a university student with exams this week"]
KNOWLEDGE = [
    "Sertraline doses are changed by a doctor, usually in steps of 50 mg at intervals of at "
    "least a week; it takes two to six weeks to reach its full effect."
]
CHITCHAT = "Thanks a lot, that's all for today!"
"""The turn for zero critics under the router (the router chooses none for small talk)."""
CHITCHAT_DRAFT = "You're welcome, take care!"
"""Small talk's draft: the router reads the draft too (a dose in it would be worth checking)."""

DRAFT = (
    "Yes, you can take 100 mg of sertraline this week. Doubling the dose will make it work "
    "faster, so you should feel calmer before your exam on Friday. Take both tablets in the "
    "morning with breakfast, and if you still feel anxious on Thursday you could add another "
    "50 mg. Good luck with the exam!"
)
REFINED = (
    "I understand how stressful the days before an exam are. Please don't change your "
    "sertraline dose on your own: doses are changed by your doctor, usually in steps of 50 mg "
    "at least a week apart, and a higher dose would not work faster — it takes two to six weeks "
    "to reach its full effect. If the anxiety feels unmanageable before Friday, call your doctor "
    "or pharmacist today; they can advise you safely. Good luck with the exam."
)
ISSUES = {
    "factuality": (
        "Doubling the dose will make it work faster",
        "The passage says sertraline takes two to six weeks to reach its effect; a higher dose "
        "does not make it act faster.",
        "Say that a higher dose would not work faster, citing the two to six weeks.",
    ),
    "personalization": (
        "Good luck with the exam!",
        "The user said they are panicking before an exam; the reply ignores their stress.",
        "Acknowledge the stress of exam week before giving any advice.",
    ),
    "coherence": (
        "you can take 100 mg of sertraline this week",
        "The assistant said earlier that doses start at 50 mg and take weeks to help; this "
        "contradicts it.",
        "Stay consistent with the earlier turn about the starting dose and the weeks it takes.",
    ),
    "safety": (
        "you could add another 50 mg",
        "Advising a self-directed dose increase of a psychiatric medication is unsafe.",
        "Do not advise changing the dose; refer the user to their doctor or pharmacist.",
    ),
}


def turn_text(number: int) -> str:
    """The question of turn `number`: unique, so no cache (router, embeddings) answers it."""
    return f"{QUESTION} (message {number})"


def request(number: int, *, chitchat: bool = False) -> dict[str, Any]:
    """The refine request of turn `number`: the conversation so far plus the new question."""
    text = f"{CHITCHAT} ({number})" if chitchat else turn_text(number)
    return {
        "messages": [*HISTORY, {"role": "user", "content": text}],
        "persona": PERSONA,
        "knowledge": KNOWLEDGE,
    }


def critique(aspect: str, verdict: str = "revise") -> dict[str, Any]:
    if verdict == "pass":
        return {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}
    span, problem, fix = ISSUES[aspect]
    return {
        "verdict": "revise",
        "issues": [{"span": span, "problem": problem, "fix": fix}],
        "confidence": 0.85,
        "evidence": ["p1"] if aspect == "factuality" else [],
    }


def plan(aspects: Sequence[str]) -> dict[str, Any]:
    return {"steps": [{"aspect": a, "reason": f"the turn needs a {a} check"} for a in aspects]}


EDIT = {
    "changes": [{"aspect": a, "change": f"resolved the {a} issue"} for a in ASPECTS],
    "reply": REFINED,
}


class Scriptable(Protocol):
    """A FakeProvider (here or remote) or a ScriptedChatModel."""

    def set_default(self, agent: str, response: Any) -> Any: ...


def script_turn(provider: Scriptable, aspects: Sequence[str], verdict: str = "revise") -> None:
    """Default answers for one kind of turn: the planner chooses `aspects`; every critic (and
    each sequential step, and self-refine) gives `verdict`; the editor rewrites."""
    provider.set_default("responder", DRAFT if aspects else CHITCHAT_DRAFT)
    provider.set_default("planner", plan(aspects))
    for aspect in ASPECTS:
        provider.set_default(aspect, critique(aspect, verdict))
        step = {**critique(aspect, verdict), "reply": REFINED if verdict == "revise" else DRAFT}
        provider.set_default(f"{aspect}_refiner", step)
    overall = critique("factuality", verdict)
    if verdict == "revise":
        overall["issues"] = [critique(a)["issues"][0] for a in ASPECTS]
    provider.set_default("self_refine", overall)
    provider.set_default("editor", EDIT)


def refiner_config(provider: RemoteProvider, home: Path, **overrides: Any) -> RefinerConfig:
    """A refiner on the provider: no retries, persona memory and the knowledge base off (their
    costs are measured in their own benchmarks), quiet logs."""
    values: dict[str, Any] = {
        "base_url": provider.base_url,
        "api_key": "benchmark",
        "max_retries": 0,
        "home": home,
        "memory": False,
        "kb": "off",
        "log_level": "WARNING",
        **overrides,
    }
    return RefinerConfig(**values)


# ── the request log ────────────────────────────────────────────────────────────────────────


def round_trips(calls: Sequence[Call]) -> list[list[Call]]:
    """The turn's provider round trips on its critical path: calls that overlapped in time at
    the provider form one round trip (the parallel critics), calls one after another form
    separate ones."""
    rounds: list[list[Call]] = []
    end = float("-inf")
    for call in sorted(calls, key=lambda c: c.started):
        if rounds and call.started < end:
            rounds[-1].append(call)
            end = max(end, call.ended)
        else:
            rounds.append([call])
            end = call.ended
    return rounds


def provider_seconds(rounds: Sequence[Sequence[Call]]) -> float:
    """Provider time on the critical path: each round trip lasts as long as its slowest call.
    This is what a turn would take with an orchestrator that cost nothing."""
    return sum(max(call.seconds for call in calls) for calls in rounds)


def in_flight(calls: Sequence[Call]) -> int:
    """Most calls that were running at the provider at the same time."""
    events = sorted([(c.started, 1) for c in calls] + [(c.ended, -1) for c in calls])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def expected_round_trips(strategy: str, planner: str, critics: int) -> int:
    """Round trips by design when every chosen critic revises: none = draft; self_refine =
    draft + critique + rewrite; sequential = draft + plan + k; parallel = draft + plan + one
    critic round (k > 0) + one merge (k > 0). The router plans without a round trip."""
    plan_call = 1 if planner == "llm" else 0
    if strategy == "none":
        return 1
    if strategy == "self_refine":
        return 3
    if strategy == "sequential":
        return 1 + plan_call + critics
    return 1 + plan_call + (2 if critics else 0)


# ── statistics and the machine ─────────────────────────────────────────────────────────────


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, mean and count (percentiles interpolated; with few values p99 is close
    to the maximum)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"n": 0}
    return {
        "n": int(data.size),
        "p50": round(float(np.percentile(data, 50)), 2),
        "p90": round(float(np.percentile(data, 90)), 2),
        "p99": round(float(np.percentile(data, 99)), 2),
        "mean": round(float(data.mean()), 2),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


PACKAGES = ("langgraph", "langchain-core", "langchain-openai", "openai", "pydantic", "uvicorn")


def machine() -> dict[str, Any]:
    """Where and with what the figures were made: CPU, cores, load, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    with_model_name = Path("/proc/cpuinfo")
    if with_model_name.exists():
        for line in with_model_name.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {"redraft": _version("redraft")}
    versions.update({name: _version(name) for name in PACKAGES})
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
