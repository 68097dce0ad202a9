"""Usage accounting: calls, retries, failures and tokens per agent, for one turn.

A `UsageTracker` rides in the turn's run config (`callbacks`). LangChain chat models report to
it through callbacks; redraft's direct provider path (`redraft.llm.direct`) reports to it with
plain method calls, so a call costs no callback machinery.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config

from redraft.state import AgentUsage, Usage

AGENT_KEY = "redraft_agent"
RETRY_KEY = "redraft_retry"


def agent_config(agent: str, attempt: int = 0) -> RunnableConfig:
    """Run config that names the agent, for usage accounting, tracing and logs."""
    metadata: dict[str, Any] = {AGENT_KEY: agent}
    if attempt:
        metadata[RETRY_KEY] = attempt
    return {"metadata": metadata, "run_name": agent, "tags": [f"agent:{agent}"]}


class UsageTracker(AsyncCallbackHandler):
    """Counts calls and tokens per agent.

    Attached to one turn's run config; agents are recognised by `agent_config`'s metadata.
    Being among a run's callbacks makes LangGraph report every node to it; it takes only
    chat-model events, in place (no task per event): about 1.2 ms of CPU less per turn
    (BENCHMARKS.md, "CPU per turn").
    """

    run_inline = True
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self) -> None:
        self._running: dict[UUID, tuple[str, str | None]] = {}
        self.usage = Usage()
        self.tokens_by_node: dict[str, int] = {}

    # ── reported directly (the direct provider path) ──

    def count_retry(self, agent: str) -> None:
        self.usage.by_agent.setdefault(agent, AgentUsage()).retries += 1
        self.usage.retries += 1

    def count_call(
        self, agent: str, node: str | None, prompt: int, completion: int, failed: bool = False
    ) -> None:
        """One call sent and answered (or failed), with the tokens it used."""
        if node:
            self.tokens_by_node[node] = self.tokens_by_node.get(node, 0) + prompt + completion
        per_agent = self.usage.by_agent.setdefault(agent, AgentUsage())
        if failed:
            per_agent.failed_calls += 1
            self.usage.failed_calls += 1
        per_agent.calls += 1
        per_agent.prompt_tokens += prompt
        per_agent.completion_tokens += completion
        self.usage.llm_calls += 1
        self.usage.prompt_tokens += prompt
        self.usage.completion_tokens += completion

    def count_cut(self, agent: str) -> None:
        """A call cut by its timeout: sent, and failed."""
        self.count_call(agent, None, 0, 0, failed=True)

    # ── reported through LangChain callbacks ──

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        agent = metadata.get(AGENT_KEY)
        if agent:
            self._running[run_id] = (agent, metadata.get("langgraph_node"))
            if metadata.get(RETRY_KEY):
                self.count_retry(agent)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._running.pop(run_id, None)
        if started is not None:
            self.count_call(*started, *_token_counts(response))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._running.pop(run_id, None)
        # A cancelled call was cut by its timeout (counted by `send`) or by the turn's deadline.
        if started is not None and not isinstance(error, asyncio.CancelledError):
            self.count_call(*started, 0, 0, failed=True)


def run_config() -> dict[str, Any] | None:
    """The config of the run in progress (a graph node, a runnable), if any."""
    return cast("dict[str, Any] | None", var_child_runnable_config.get())


def current_tracker(config: dict[str, Any] | None = None) -> UsageTracker | None:
    """The UsageTracker among the running run's callbacks, if any."""
    config = run_config() if config is None else config
    if not config:
        return None
    callbacks = config.get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks) or []
    return next((h for h in handlers if isinstance(h, UsageTracker)), None)


def _token_counts(response: LLMResult) -> tuple[int, int]:
    for generations in response.generations:
        for generation in generations:
            meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if meta:
                return meta.get("input_tokens", 0), meta.get("output_tokens", 0)
    usage = (response.llm_output or {}).get("token_usage") or {}
    return usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
