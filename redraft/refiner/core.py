"""`Refiner`: the public entry point around the graph (validation, threads, usage, events)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Literal
from urllib.parse import quote

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.retrievers import BaseRetriever
from langgraph.store.base import BaseStore
from langgraph.types import Command
from pydantic import BaseModel

from redraft.agents.critic import Critic
from redraft.config import RefinerConfig
from redraft.embeddings import DeferredEmbeddings, LocalEmbeddings, wait_for_load
from redraft.errors import RefineError
from redraft.graphs.deadline import GUARD_MARGIN_S, TurnTimedOut, until
from redraft.graphs.refine import STREAM_REPLY, build_graph
from redraft.llm.calls import Models, UsageTracker
from redraft.log import configure_logging, text_fields
from redraft.personas.learning import learn_from_edit, learn_from_turn
from redraft.personas.model import EditPreference, normalise
from redraft.personas.recall import remembers
from redraft.personas.scrub import secure_delete, truncate_wal
from redraft.personas.store import OPEN_TIMEOUT_S, PersonaStore, open_store
from redraft.personas.worker import MemoryWorker
from redraft.request_limits import REQUEST_LIMITS
from redraft.response_format import wants_json
from redraft.safety.ask import INTERRUPT_TYPE
from redraft.state import (
    Critique,
    Degradation,
    Plan,
    RefineRequest,
    RefineResult,
    SafetyQuestion,
)
from redraft.waits import outage_of, within

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


class ReplyText:
    """The reply for clients that can only append text (OpenAI chunks, LangChain chunks).

    Feed it each `ReplyToken`, then the final reply: text is passed on as it is written; after a
    reset nothing more is passed on until the end, and then whatever completes the reply.
    """

    def __init__(self) -> None:
        self.sent = ""
        self._held = False

    def add(self, token: ReplyToken) -> str:
        """The text to send now."""
        self._held = self._held or token.reset
        if self._held:
            return ""
        self.sent += token.text
        return token.text

    def finish(self, reply: str) -> str:
        """The text that completes `reply`: empty when `reply` does not extend what was sent
        (sent text cannot be taken back; `sent != reply` tells)."""
        rest = reply[len(self.sent) :] if reply.startswith(self.sent) else ""
        self.sent += rest
        return rest


class Refiner:
    """Refines chatbot replies; one instance serves many users and threads concurrently.

    `Refiner()` reads its settings from the environment. Pass `model` (any LangChain chat model,
    or a mapping role → model) to use your own models, e.g. `redraft.testing.ScriptedChatModel`.
    `retrievers` (any LangChain retrievers) are asked for evidence every turn, as is the local
    knowledge base when there is one.
    `critics` (`Critic` objects) are this refiner's own, beside the registered ones: among its
    planner's choices on every turn, whatever the config's `critics` say (docs/critics.md).
    `store` (any LangGraph store) keeps personas instead of the configured one (see `personas`).
    Use it as an (async) context manager, or call `close()`/`aclose()`, to finish background
    memory work and release thread and persona storage.
    `preload=True`: `async with Refiner(...)` loads the embedding model, the router and the
    knowledge base before its body runs (see `preload()`), so the first turn is as fast as the
    tenth. Without it they load in the background on first need, and turns with a deadline go
    without them until then (said in `degraded`).
    """

    def __init__(
        self,
        config: RefinerConfig | None = None,
        *,
        model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
        checkpointer: Any = None,
        retrievers: Sequence[BaseRetriever] = (),
        critics: Sequence[Critic] = (),
        store: BaseStore | None = None,
        preload: bool = False,
    ) -> None:
        self.config = config or RefinerConfig()
        self._preload = preload
        # Models configured by name need the chat-model client library, a second's import:
        # started now in the background, so that no turn imports it on the event loop.
        self._client_import = _start_client_import() if model is None else None
        configure_logging(self.config.log_level)
        self._model = model
        self._retrievers = list(retrievers)
        self._store = store
        self._own_store = store is None
        self._critics = tuple(critics)
        self._graph = self._build()
        self._checkpointer = checkpointer
        self._threads_graph = None
        self._exit_stack = contextlib.AsyncExitStack()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._personas: PersonaStore | None = None
        self._personas_lock = asyncio.Lock()
        self._personas_failed: tuple[float, str] | None = None
        self._memory = MemoryWorker()
        self._models = Models(model)
        self._forgotten: dict[str, int] = {}
        # Without embeddings a turn cannot place what it learns: no extraction call is made.
        self._can_embed = DeferredEmbeddings(self.config)

    # ── validation ──────────────────────────────────────────────────────────────────────

    def validate(self, request: RefineRequest | Mapping[str, Any]) -> RefineRequest:
        """Check a request against this refiner's limits; raises pydantic's ValidationError."""
        data = request.model_dump() if isinstance(request, RefineRequest) else request
        limits = {name: getattr(self.config, name) for name in REQUEST_LIMITS}
        return RefineRequest.model_validate(data, context=limits)

    # ── threads ─────────────────────────────────────────────────────────────────────────

    def _build(self, checkpointer: Any = None):
        return build_graph(
            self.config,
            model=self._model,
            checkpointer=checkpointer,
            store=self._store,
            retrievers=self._retrievers,
            critics=self._critics,
        )

    async def _graph_for(self, request: RefineRequest):
        if remembers(request.user_id):
            await self._open_personas_for_turn()
        if request.thread_id is None:
            return self._graph
        if self._threads_graph is None:
            if self._checkpointer is None:
                self._checkpointer = await self._open_checkpointer()
            self._threads_graph = self._build(self._checkpointer)
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
                # A database that stops answering fails a turn in seconds, not the pool's 30 s.
                timeout=OPEN_TIMEOUT_S,
            )
            try:
                await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
            except BaseException:
                await pool.close()  # or it keeps reconnecting in the background
                raise
            self._exit_stack.push_async_callback(pool.close)
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            return saver
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        self.config.home.mkdir(parents=True, exist_ok=True)
        saver = await self._exit_stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(str(self.config.sqlite_path))
        )
        await secure_delete(saver.conn)
        return saver

    # ── turns ───────────────────────────────────────────────────────────────────────────

    def _run_config(
        self, request: RefineRequest, tracker: UsageTracker, *, reply_tokens: bool = True
    ) -> dict[str, Any]:
        configurable: dict[str, Any] = {STREAM_REPLY: reply_tokens}
        if request.thread_id is not None:
            configurable["thread_id"] = thread_key(request.user_id, request.thread_id)
        return {"callbacks": [tracker], "recursion_limit": 50, "configurable": configurable}

    async def arefine(
        self, request: RefineRequest | Mapping[str, Any], *, config: RefinerConfig | None = None
    ) -> RefineResult:
        """Refine one turn; returns the reply, or raises RefineError when none can be made."""
        result = None
        async for event in self.astream(request, config=config, reply_tokens=False):
            if isinstance(event, TurnDone):
                result = event.result
        assert result is not None  # astream always ends with TurnDone or raises
        return result

    async def astream(
        self,
        request: RefineRequest | Mapping[str, Any],
        *,
        config: RefinerConfig | None = None,
        reply_tokens: bool = True,
    ) -> AsyncIterator[RefineEvent]:
        """Refine one turn, yielding events as they happen and `TurnDone` last.

        `config`: settings for this turn only (e.g. another strategy: the fields the graph reads
        at run time), instead of this refiner's. `reply_tokens=False`: the rewritten reply is
        not streamed while the editor writes it (it comes as one `ReplyToken`), which saves the
        CPU that streaming costs on every token — for callers that only want the result.
        """
        settings = config or self.config
        request = self.validate(request)
        # A JSON reply is checked before it goes out: a rewrite is not streamed as written.
        reply_tokens = reply_tokens and not wants_json(request.response_format)
        tracker = UsageTracker()
        started = time.perf_counter()
        run_config = self._run_config(request, tracker, reply_tokens=reply_tokens)
        lost_thread: Degradation | None = None
        try:
            # Reading the thread counts against the turn's deadline like everything else.
            async with asyncio.timeout(settings.deadline_s):
                if self._client_import is not None:
                    await wait_for_load(self._client_import, None)
                if remembers(request.user_id):
                    # Bounded on its own; a store that cannot open costs memory, not the thread.
                    await self._open_personas_for_turn()
                reading = self._start(request, run_config)
                graph, graph_input = await (
                    outage_of(self.config.database_url).call(reading, settings.store_timeout_s)
                    if self.config.checkpointer_kind == "postgres" and self.config.database_url
                    else within(reading, settings.store_timeout_s)
                )
        except Exception as exc:
            detail = str(exc) or "no answer within the turn's deadline"
            problem = f"the thread could not be read: {type(exc).__name__}: {detail}"[:500]
            if request.draft is None:
                raise RefineError(problem, step="threads", cause=exc) from exc
            # A handed-in draft still comes back: the turn runs on the request's messages.
            log.warning("threads.unavailable", error=type(exc).__name__)
            lost_thread = Degradation(step="threads", reason=f"{problem}; the turn was not stored")
            request = request.model_copy(update={"thread_id": None})
            run_config = self._run_config(request, tracker, reply_tokens=reply_tokens)
            graph, graph_input = await self._start(request, run_config)
        if settings.deadline_s is not None:
            # The graph has what is left of the deadline once the thread is read.
            left = settings.deadline_s - (time.perf_counter() - started)
            settings = settings.model_copy(update={"deadline_s": max(left, 0.01)})
        personas = self._personas if remembers(request.user_id) else None
        generation = self._forgotten.get(request.user_id, 0)
        if personas is not None and request.thread_id is not None:
            self._remember_thread(personas, request.user_id, request.thread_id)
        final: dict[str, Any] = {}
        question: SafetyQuestion | None = None
        # Not a dump of the request on every turn; a logger configured by the application
        # may have no `is_enabled_for` (it filters itself).
        if getattr(log, "is_enabled_for", lambda _: True)(logging.DEBUG):
            log.debug(
                "turn.start",
                user_id=request.user_id,
                thread_id=request.thread_id,
                strategy=settings.strategy,
                **text_fields(messages=request.model_dump()["messages"]),
            )
        # The nodes end the turn by its deadline; should anything not, it is stopped here.
        deadline_s = settings.deadline_s
        stopped, streaming = None, False
        try:
            async for mode, chunk in until(
                graph.astream(
                    graph_input,
                    config=run_config,
                    context=settings,
                    stream_mode=["updates", "custom", "values"],
                    # One checkpoint per turn, when it ends (or pauses for a question): fewer
                    # writes, and a process killed mid-turn leaves the thread as it was.
                    durability="exit" if request.thread_id is not None else None,
                ),
                None if deadline_s is None else deadline_s + GUARD_MARGIN_S,
            ):
                if mode == "values":
                    final = chunk
                elif mode == "custom" and isinstance(chunk, dict):
                    if "token" in chunk:
                        streaming = True
                        yield ReplyToken(text=chunk["token"])
                    elif chunk.get("reset"):
                        streaming = False
                        yield ReplyToken(reset=True)
                elif mode == "updates":
                    if "__interrupt__" in chunk:
                        question = _question_from(chunk["__interrupt__"])
                    for event in _events_from_update(chunk):
                        yield event
        except TurnTimedOut as exc:
            stopped = exc
        except RefineError:
            raise
        except Exception as exc:
            raise RefineError(f"the turn failed: {exc}", step="graph", cause=exc) from exc
        result = _result(final, tracker, started, settings.strategy, request.thread_id)
        if stopped is not None:
            if not result.reply and request.draft_text:
                text = request.draft_text
                result = result.model_copy(update={"reply": text, "draft": text})
            if not result.reply:
                raise RefineError(
                    f"no reply within the deadline of {(config or self.config).deadline_s:g} s",
                    step="deadline",
                    cause=stopped,
                ) from stopped
            # The best reply so far (the draft at worst) is the reply.
            cut = Degradation(step="deadline", reason=f"the turn was {stopped}")
            result = result.model_copy(update={"degraded": [*(result.degraded or []), cut]})
            if streaming:
                yield ReplyToken(reset=True)
            yield ReplyToken(text=result.reply)
        if question is None and final.get("ask"):
            question = SafetyQuestion(**final["ask"])  # unthreaded: the question is the reply
        if question is not None:
            # The question is what the user sees instead of the draft: the reply changed.
            update = {"question": question, "reply": question.question, "changed": True}
            result = result.model_copy(update=update)
        learns = settings.memory and settings.memory_learn and self._can_embed.available()
        if personas is not None and learns:
            self._learn_later(personas, request.user_id, final, result, settings, generation)
        failed = self._personas_failed if remembers(request.user_id) else None
        if personas is None and settings.memory and failed is not None:
            problem = Degradation(step="memory", reason=failed[1])
            result = result.model_copy(update={"degraded": [*(result.degraded or []), problem]})
        if lost_thread is not None:
            result = result.model_copy(update={"degraded": [*(result.degraded or []), lost_thread]})
        log.info(
            "turn.done",
            user_id=request.user_id,
            changed=result.changed,
            llm_calls=result.usage.llm_calls,
            ms=round(result.timings["total"], 1),
            degraded=[d.step for d in result.degraded or []],
            aspects=result.plan.aspects,
            nodes={node: round(ms) for node, ms in result.timings.items() if node != "total"},
        )
        yield TurnDone(result=result)

    async def aresume(self, user_id: str, thread_id: str, answer: str) -> RefineResult:
        """Answer the safety agent's pending question in a thread and finish the turn.

        Sending the answer as the next user message of the thread does the same.
        """
        request = self.validate(
            {
                "messages": [{"role": "user", "content": answer}],
                "user_id": user_id,
                "thread_id": thread_id,
            }
        )
        graph = await self._graph_for(request)
        if not await self._pending_question(graph, self._run_config(request, UsageTracker())):
            raise RefineError(
                f"thread {thread_id!r} of user {user_id!r} has no pending question to answer",
                step="resume",
            )
        return await self.arefine(request)

    async def check_threads(self) -> None:
        """Raise when the thread storage does not answer: a replica's health check. Threads on
        PostgreSQL are asked for a connection; a local SQLite file or memory always answers."""
        if self.config.checkpointer_kind != "postgres":
            return
        if self._checkpointer is None:
            self._checkpointer = await self._open_checkpointer()
        async with self._checkpointer.conn.connection(timeout=OPEN_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")

    async def _start(self, request: RefineRequest, run_config: dict[str, Any]) -> tuple[Any, Any]:
        """The turn's graph and its input: the request, or — when the thread waits for an
        answer to the safety agent's question — the user's message as that answer."""
        graph = await self._graph_for(request)
        if await self._pending_question(graph, run_config):
            return graph, Command(resume=request.messages[-1].content)
        return graph, {"request": request.model_dump()}

    async def _pending_question(self, graph: Any, run_config: dict[str, Any]) -> bool:
        if "thread_id" not in run_config["configurable"]:
            return False
        snapshot = await graph.aget_state(run_config)
        return bool(snapshot.interrupts)

    def refine(self, request: RefineRequest | Mapping[str, Any]) -> RefineResult:
        """Synchronous `arefine`, run on this refiner's own event loop thread (a daemon, so an
        unclosed refiner never keeps the process from exiting)."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=_run_loop, args=(self._loop,), name="redraft-refiner", daemon=True
                ).start()
        return asyncio.run_coroutine_threadsafe(self.arefine(request), self._loop).result()

    # ── personas and memory ─────────────────────────────────────────────────────────────

    async def personas(self) -> PersonaStore:
        """The persona store (profiles, facts, edit preferences and thread ids, one namespace
        per user), opened on first use. Raises when it cannot be opened."""
        async with self._personas_lock:
            if self._personas is None:
                if self._store is None:
                    self._store = await open_store(self.config, self._exit_stack)
                    self._graph = self._build()
                    self._threads_graph = None
                self._personas = PersonaStore.on(self._store, self.config)
                self._personas_failed = None
        return self._personas

    async def _open_personas_for_turn(self) -> None:
        """Open the persona store for a turn; a store that cannot be opened leaves the turn
        without memory (`degraded`) and is tried again after a pause, not on every turn."""
        failed = self._personas_failed
        if self._personas is not None or (failed and time.monotonic() - failed[0] < RETRY_S):
            return
        try:
            await self.personas()
        except Exception as exc:
            log.warning("memory.unavailable", error=type(exc).__name__)
            reason = f"persona memory unavailable: {type(exc).__name__}: {exc}"[:500]
            self._personas_failed = (time.monotonic(), reason)

    def _remember_thread(self, personas: PersonaStore, user_id: str, thread_id: str) -> None:
        """Index the thread under its user (in the background), so `forget` can delete it."""
        self._memory.submit(
            user_id, lambda: personas.remember_thread(user_id, thread_id), "remember_thread"
        )

    def _learn_later(
        self,
        personas: PersonaStore,
        user_id: str,
        final: dict[str, Any],
        result: RefineResult,
        settings: RefinerConfig,
        generation: int,
    ) -> None:
        """Learn from the turn after its reply is out: one extraction call, in the background,
        after the user's earlier memory work."""
        history = list(final.get("history") or [])
        reply = {"role": "assistant", "content": result.reply}
        if not result.tool_calls and (not history or history[-1] != reply):
            history.append(reply)

        async def learn() -> None:
            if self._forgotten.get(user_id, 0) != generation:
                return  # the user was forgotten while this turn ran
            await learn_from_turn(
                personas,
                self._models.for_role("memory", settings),
                user_id=user_id,
                history=history,
                method=settings.structured_output,
            )

        self._memory.submit(user_id, learn, "learn_from_turn")

    async def record_edit(
        self,
        user_id: str,
        reply: str,
        edited_reply: str,
        context: str | Sequence[Mapping[str, str]],
    ) -> EditPreference | None:
        """CIPHER: learn the preference the user's edit of a reply expresses.

        `context` is what the reply answered: the user's message, or the conversation (its last
        user message is used). The preference is stored with the context's embedding; later
        turns with a similar context hand it to the critics. Returns None when the edit expresses
        no lasting preference (or changes nothing).
        """
        if not remembers(user_id):
            raise ValueError("user_id: requests without a user id keep no memory")
        query = context if isinstance(context, str) else _last_user_text(context)
        if not query.strip():
            raise ValueError("context: give the user's message the reply answered")
        if normalise(reply) == normalise(edited_reply):
            return None
        personas = await self.personas()
        model = self._models.for_role("memory", self.config)
        return await self._memory.run(
            user_id,
            lambda: learn_from_edit(
                personas,
                model,
                user_id=user_id,
                context=query,
                reply=reply,
                edited_reply=edited_reply,
                method=self.config.structured_output,
            ),
            "learn_from_edit",
        )

    async def forget(self, user_id: str) -> dict[str, int]:
        """Delete every fact, edit preference, profile item and thread of the user.

        Runs after the user's pending memory work; turns in flight learn nothing. Returns how
        many items of each kind were deleted (`threads`: threads deleted from the checkpointer).
        """
        self._forgotten[user_id] = self._forgotten.get(user_id, 0) + 1
        personas = await self.personas()

        async def erase() -> dict[str, int]:
            threads = await personas.threads(user_id)
            if threads:
                if self._checkpointer is None:
                    self._checkpointer = await self._open_checkpointer()
                for thread_id in threads:
                    await self._checkpointer.adelete_thread(thread_key(user_id, thread_id))
            return await personas.forget(user_id)

        counts = await self._memory.run(user_id, erase, "forget")
        # The deleted text must not stay in a SQLite WAL until the server stops.
        await truncate_wal(self._checkpointer, personas.store)
        log.info("memory.forgot", user_id=user_id, **counts)
        return counts

    async def wait_for_memory(self) -> None:
        """Wait until the background memory work scheduled so far (and meanwhile) is done."""
        await self._memory.drain()

    async def aclose(self) -> None:
        await self._memory.drain()
        await self._exit_stack.aclose()
        self._threads_graph = None
        self._personas = None
        if self._own_store and self._store is not None:
            self._store = None
            self._graph = self._build()

    def close(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None

    async def preload(self) -> dict[str, float]:
        """Load now, in worker threads (the event loop keeps serving), what a turn would
        otherwise find still loading: the local embedding model, the router (planner router or
        hybrid), the knowledge base (when configured) and the chat-model client library.
        Returns the seconds each part took; a part that cannot load is logged and left to
        degrade the turns that need it, as it would without preloading."""
        from redraft.embeddings import local_model_installed, needs_local_model
        from redraft.knowledge.retrieval import configured_knowledge_base
        from redraft.routing.plans import start_router_load

        cfg = self.config
        parts: list[tuple[str, Any]] = []
        if self._client_import is not None:
            parts.append(("chat_models", self._client_import.result))
        # The local model serves the router, persona memory, the knowledge base and the
        # safety critic's paths: loaded when one of them is on.
        embeds = (
            cfg.planner in ("router", "hybrid")
            or cfg.memory
            or cfg.kb != "off"
            or "safety" in cfg.critics
        )
        if embeds and needs_local_model(cfg) and local_model_installed():
            parts.append(("embeddings", lambda: LocalEmbeddings().warm_up()))
        if cfg.planner in ("router", "hybrid"):
            parts.append(("router", lambda: start_router_load(cfg).result()))
        if cfg.kb != "off":
            parts.append(("knowledge_base", lambda: configured_knowledge_base(cfg)))
        seconds: dict[str, float] = {}
        for name, load in parts:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(load)
            except Exception as exc:
                log.warning("preload.failed", part=name, error=f"{type(exc).__name__}: {exc}")
                continue
            seconds[name] = round(time.perf_counter() - started, 3)
        log.info("preload.done", **seconds)
        return seconds

    async def __aenter__(self) -> Refiner:
        if self._preload:
            await self.preload()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Refiner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_client_import: Future[Any] | None = None
_client_import_lock = threading.Lock()


def _start_client_import() -> Future[Any]:
    """Import the chat-model client library (langchain_openai, openai) in a background
    thread, once per process; the future is done when it is imported (or failed to)."""
    global _client_import
    with _client_import_lock:
        if _client_import is None:
            _client_import = Future()
            loading = _client_import

            def run() -> None:
                try:
                    loading.set_result(importlib.import_module("langchain_openai"))
                except BaseException as exc:
                    loading.set_exception(exc)

            threading.Thread(target=run, name="redraft-client-import").start()
        return _client_import


RETRY_S = 60.0
"""How long a persona store that failed to open is left alone before it is tried again."""


def thread_key(user_id: str, thread_id: str) -> str:
    """The checkpointer's thread id. The user id is escaped so that no (user, thread) pair can
    name another's thread."""
    return f"{quote(user_id, safe='')}:{thread_id}"


def _last_user_text(messages: Sequence[Mapping[str, str]]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_forever()
    loop.close()


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


def _question_from(interrupts: Any) -> SafetyQuestion | None:
    for item in interrupts or ():
        value = getattr(item, "value", None)
        if isinstance(value, dict) and value.get("type") == INTERRUPT_TYPE:
            return SafetyQuestion(attribute=value["attribute"], question=value["question"])
    return None


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
        asked=state.get("asked") or [],
        blocked=bool(state.get("blocked")),
        gate=state.get("gate"),
        changes=state.get("changes") or [],
        overridden=state.get("overridden") or [],
        tool_calls=state.get("tool_calls") or None,
        degraded=state.get("degraded") or None,
        citations=state.get("citations") or [],
        usage=tracker.usage,
        timings=timings,
        strategy=strategy,
        thread_id=thread_id,
    )
