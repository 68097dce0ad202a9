"""`Refiner`: the public entry point around the graph (validation, threads, usage, events)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import structlog
from anyio.from_thread import BlockingPortal, start_blocking_portal
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from redraft.config import RefinerConfig
from redraft.errors import RefineError
from redraft.graphs.refine import build_graph
from redraft.llm import UsageTracker
from redraft.log import configure_logging, text_fields
from redraft.state import Critique, Plan, RefineRequest, RefineResult

log = structlog.get_logger("redraft")


class PlanMade(BaseModel):
    type: Literal["plan"] = "plan"
    plan: Plan


class DraftWritten(BaseModel):
    type: Literal["draft"] = "draft"
    draft: str


class CritiqueDone(BaseModel):
    type: Literal["critique"] = "critique"
    critique: Critique


class ReplyToken(BaseModel):
    """Text of the final reply as it is written. `reset`: discard the text received so far
    (a streamed rewrite was abandoned); the reply then arrives again."""

    type: Literal["token"] = "token"
    text: str = ""
    reset: bool = False


class TurnDone(BaseModel):
    type: Literal["done"] = "done"
    result: RefineResult


RefineEvent = PlanMade | DraftWritten | CritiqueDone | ReplyToken | TurnDone


class Refiner:
    """Refines chatbot replies; one instance serves many users and threads concurrently.

    `Refiner()` reads its settings from the environment. Pass `model` (any LangChain chat model,
    or a mapping role → model) to use your own models, e.g. `redraft.testing.ScriptedChatModel`.
    Use it as an (async) context manager, or call `close()`/`aclose()`, to release thread storage.
    """

    def __init__(
        self,
        config: RefinerConfig | None = None,
        *,
        model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
        checkpointer: Any = None,
    ) -> None:
        self.config = config or RefinerConfig()
        configure_logging(self.config.log_level)
        self._model = model
        self._graph = build_graph(self.config, model=model)
        self._checkpointer = checkpointer
        self._threads_graph = None
        self._exit_stack = contextlib.AsyncExitStack()
        self._portal: BlockingPortal | None = None
        self._portal_cm: Any = None

    # ── validation ──────────────────────────────────────────────────────────────────────

    def validate(self, request: RefineRequest | Mapping[str, Any]) -> RefineRequest:
        """Check a request against this refiner's limits; raises pydantic's ValidationError."""
        data = request.model_dump() if isinstance(request, RefineRequest) else request
        limits = {
            "max_messages": self.config.max_messages,
            "max_message_chars": self.config.max_message_chars,
        }
        return RefineRequest.model_validate(data, context=limits)

    # ── threads ─────────────────────────────────────────────────────────────────────────

    async def _graph_for(self, request: RefineRequest):
        if request.thread_id is None:
            return self._graph
        if self._threads_graph is None:
            if self._checkpointer is None:
                self._checkpointer = await self._open_checkpointer()
            self._threads_graph = build_graph(
                self.config, model=self._model, checkpointer=self._checkpointer
            )
        return self._threads_graph

    async def _open_checkpointer(self) -> Any:
        kind = self.config.checkpointer_kind
        if kind == "memory":
            from langgraph.checkpoint.memory import InMemorySaver

            return InMemorySaver()
        if kind == "postgres":
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool

            if not self.config.database_url:
                raise RefineError(
                    "checkpointer=postgres needs REDRAFT_DATABASE_URL", step="threads"
                )
            pool = AsyncConnectionPool(
                self.config.database_url,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                open=False,
            )
            await pool.open()
            self._exit_stack.push_async_callback(pool.close)
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            return saver
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.config.home.mkdir(parents=True, exist_ok=True)
        return await self._exit_stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(str(self.config.sqlite_path))
        )

    # ── turns ───────────────────────────────────────────────────────────────────────────

    def _run_config(self, request: RefineRequest, tracker: UsageTracker) -> dict[str, Any]:
        config: dict[str, Any] = {"callbacks": [tracker], "recursion_limit": 50}
        if request.thread_id is not None:
            config["configurable"] = {"thread_id": f"{request.user_id}:{request.thread_id}"}
        return config

    async def arefine(self, request: RefineRequest | Mapping[str, Any]) -> RefineResult:
        """Refine one turn; returns the reply, or raises RefineError when none can be made."""
        result = None
        async for event in self.astream(request):
            if isinstance(event, TurnDone):
                result = event.result
        assert result is not None  # astream always ends with TurnDone or raises
        return result

    async def astream(
        self, request: RefineRequest | Mapping[str, Any]
    ) -> AsyncIterator[RefineEvent]:
        """Refine one turn, yielding events as they happen and `TurnDone` last."""
        request = self.validate(request)
        graph = await self._graph_for(request)
        tracker = UsageTracker()
        started = time.perf_counter()
        final: dict[str, Any] = {}
        log.info(
            "turn.start",
            user_id=request.user_id,
            thread_id=request.thread_id,
            strategy=self.config.strategy,
            **text_fields(messages=request.model_dump()["messages"]),
        )
        try:
            async for mode, chunk in graph.astream(
                {"request": request.model_dump()},
                config=self._run_config(request, tracker),
                context=self.config,
                stream_mode=["updates", "custom", "values"],
            ):
                if mode == "values":
                    final = chunk
                elif mode == "custom" and isinstance(chunk, dict):
                    if "token" in chunk:
                        yield ReplyToken(text=chunk["token"])
                    elif chunk.get("reset"):
                        yield ReplyToken(reset=True)
                elif mode == "updates":
                    for event in _events_from_update(chunk):
                        yield event
        except RefineError:
            raise
        except Exception as exc:
            raise RefineError(f"the turn failed: {exc}", step="graph", cause=exc) from exc
        result = _result(final, tracker, started, self.config.strategy, request.thread_id)
        log.info(
            "turn.done",
            user_id=request.user_id,
            changed=result.changed,
            llm_calls=result.usage.llm_calls,
            ms=round(result.timings["total"], 1),
            degraded=[d.step for d in result.degraded or []],
        )
        yield TurnDone(result=result)

    def refine(self, request: RefineRequest | Mapping[str, Any]) -> RefineResult:
        """Synchronous `arefine`, run on this refiner's own event loop thread."""
        if self._portal is None:
            self._portal_cm = start_blocking_portal()
            self._portal = self._portal_cm.__enter__()
        return self._portal.call(self.arefine, request)

    async def aclose(self) -> None:
        await self._exit_stack.aclose()
        self._threads_graph = None

    def close(self) -> None:
        if self._portal is not None:
            self._portal.call(self.aclose)
            self._portal_cm.__exit__(None, None, None)
            self._portal = None

    async def __aenter__(self) -> Refiner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Refiner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _events_from_update(update: dict[str, Any]) -> list[RefineEvent]:
    events: list[RefineEvent] = []
    for node, values in update.items():
        if not isinstance(values, dict):
            continue
        if node == "draft" and values.get("draft"):
            events.append(DraftWritten(draft=values["draft"]))
        if node == "plan" and values.get("plan"):
            events.append(PlanMade(plan=Plan.model_validate(values["plan"])))
        critiques = values.get("critiques")
        if isinstance(critiques, list):
            events.extend(CritiqueDone(critique=Critique.model_validate(c)) for c in critiques)
    return events


def _result(
    state: dict[str, Any],
    tracker: UsageTracker,
    started: float,
    strategy: str,
    thread_id: str | None,
) -> RefineResult:
    timings = {node: round(ms, 2) for node, ms in (state.get("timings") or {}).items()}
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    draft = state.get("draft") or ""
    reply = state.get("reply") or draft
    return RefineResult(
        reply=reply,
        draft=draft,
        changed=reply != draft,
        plan=Plan.model_validate(state.get("plan") or {}),
        critiques=[Critique.model_validate(c) for c in state.get("critiques") or []],
        changes=state.get("changes") or [],
        degraded=state.get("degraded") or None,
        usage=tracker.usage,
        timings=timings,
        strategy=strategy,
        thread_id=thread_id,
    )
