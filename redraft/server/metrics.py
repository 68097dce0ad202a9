"""Prometheus metrics of the server (`GET /metrics`).

Labels come from small fixed sets (outcome, strategy, node, agent, step, status): never user ids
or text, so metrics reveal nothing about users and stay cheap to scrape.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from redraft.state import RefineResult

TURN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "redraft_turns",
            "Turns served, by outcome: ok, degraded (a step was skipped), failed (no reply "
            "could be made), timeout.",
            ["outcome", "strategy"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "redraft_turn_seconds",
            "Wall time of a turn.",
            ["strategy"],
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.node_seconds = Histogram(
            "redraft_node_seconds",
            "Wall time per graph node.",
            ["node"],
            buckets=NODE_BUCKETS,
            registry=r,
        )
        self.llm_calls = Counter(
            "redraft_llm_calls", "LLM calls made by turns, per agent.", ["agent"], registry=r
        )
        self.llm_tokens = Counter(
            "redraft_llm_tokens", "LLM tokens, per agent and kind.", ["agent", "kind"], registry=r
        )
        self.degradations = Counter(
            "redraft_degradations",
            "Steps skipped or overridden in degraded turns, per step.",
            ["step"],
            registry=r,
        )
        self.errors = Counter(
            "redraft_http_errors", "Error responses, per status.", ["status"], registry=r
        )
        self.in_flight = Gauge("redraft_turns_in_flight", "Turns running now.", registry=r)

    def turn_done(self, result: RefineResult) -> None:
        outcome = "degraded" if result.degraded else "ok"
        self.turns.labels(outcome, result.strategy).inc()
        self.turn_seconds.labels(result.strategy).observe(result.timings.get("total", 0) / 1000)
        for node, ms in result.timings.items():
            if node != "total":
                self.node_seconds.labels(node).observe(ms / 1000)
        for agent, usage in result.usage.by_agent.items():
            self.llm_calls.labels(agent).inc(usage.calls)
            self.llm_tokens.labels(agent, "prompt").inc(usage.prompt_tokens)
            self.llm_tokens.labels(agent, "completion").inc(usage.completion_tokens)
        for item in result.degraded or []:
            self.degradations.labels(item.step).inc()

    def turn_failed(self, outcome: str, strategy: str) -> None:
        self.turns.labels(outcome, strategy).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
