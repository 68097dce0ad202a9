"""`Refiner`: the public entry point around the graph (validation, threads, memory, events)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.retrievers import BaseRetriever
from langgraph.store.base import BaseStore
from langgraph.types import Command

from redraft.agents.critic import Critic
from redraft.config import RefinerConfig
from redraft.db import OPEN_TIMEOUT_S
from redraft.embeddings import DeferredEmbeddings, wait_for_load
from redraft.errors import RefineError
from redraft.graphs.deadline import TurnTimedOut
from redraft.graphs.refine import build_graph
from redraft.llm.calls import Models
from redraft.llm.usage import UsageTracker
from redraft.log import configure_logging
from redraft.personas.learning import learn_from_edit
from redraft.personas.model import EditPreference, normalise
from redraft.personas.recall import remembers
from redraft.personas.scrub import truncate_wal
from redraft.personas.store import PersonaStore, open_store
from redraft.refiner.events import RefineEvent, TurnDone, TurnEvents
from redraft.refiner.loop import LoopThread
from redraft.refiner.memory import BackgroundMemory
from redraft.refiner.preload import preload, start_client_import
from redraft.refiner.results import asking, cut_at_deadline, degraded_by, result_from
from redraft.refiner.stores import open_checkpointer, read_thread, thread_key
from redraft.refiner.turn import Turn, run_config
from redraft.request_limits import REQUEST_LIMITS
from redraft.state import Degradation, RefineRequest, RefineResult

log = structlog.get_logger("redraft")

RETRY_S = 60.0
"""How long a persona store that failed to open is left alone before it is tried again."""


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
        self._client_import = start_client_import() if model is None else None
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
        self._loop = LoopThread("redraft-refiner")
        self._personas: PersonaStore | None = None
        self._personas_lock = asyncio.Lock()
        self._personas_failed: tuple[float, str] | None = None
        self._models = Models(model)
        self._memory = BackgroundMemory(self._models)
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
            self._threads_graph = self._build(await self._threads())
        return self._threads_graph

    async def _threads(self) -> Any:
        """The thread checkpointer, opened on first use."""
        if self._checkpointer is None:
            self._checkpointer = await open_checkpointer(self.config, self._exit_stack)
        return self._checkpointer

    async def check_threads(self) -> None:
        """Raise when the thread storage does not answer: a replica's health check. Threads on
        PostgreSQL are asked for a connection; a local SQLite file or memory always answers."""
        if self.config.checkpointer_kind != "postgres":
            return
        checkpointer = await self._threads()
        async with checkpointer.conn.connection(timeout=OPEN_TIMEOUT_S) as conn:
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

    # ── turns ───────────────────────────────────────────────────────────────────────────

    async def arefine(
        self, request: RefineRequest | Mapping[str, Any], *, config: RefinerConfig | None = None
    ) -> RefineResult:
        """Refine one turn; returns the reply, or raises RefineError when none can be made."""
        result = None
        async for event in self._turn(request, config, reply_tokens=False, wants_events=False):
            if isinstance(event, TurnDone):
                result = event.result
        assert result is not None  # a turn always ends with TurnDone or raises
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
        async for event in self._turn(
            request, config, reply_tokens=reply_tokens, wants_events=True
        ):
            yield event

    async def _turn(
        self,
        request: RefineRequest | Mapping[str, Any],
        config: RefinerConfig | None,
        *,
        reply_tokens: bool,
        wants_events: bool,
    ) -> AsyncIterator[RefineEvent]:
        """`astream`; with `wants_events=False` the graph streams only what the result needs
        and the turn yields `TurnDone` alone (and the reply's tokens if cut at its deadline)."""
        turn = Turn(self.validate(request), config or self.config, reply_tokens, wants_events)
        graph, graph_input = await self._begin(turn)
        events, stopped = TurnEvents(), None
        try:
            async for mode, chunk in turn.stream(graph, graph_input):
                for event in events.read(mode, chunk):
                    yield event
        except TurnTimedOut as exc:
            stopped = exc
        except RefineError:
            raise
        except Exception as exc:
            raise RefineError(f"the turn failed: {exc}", step="graph", cause=exc) from exc
        result = result_from(
            events.final,
            turn.tracker,
            started=turn.started,
            strategy=turn.settings.strategy,
            thread_id=turn.request.thread_id,
        )
        if stopped is not None:
            draft = turn.request.draft_text
            result = cut_at_deadline(result, stopped, draft=draft, deadline_s=turn.deadline_s)
            for token in events.replace_reply(result.reply):
                yield token
        yield TurnDone(result=self._finish(turn, events, result))

    async def _begin(self, turn: Turn) -> tuple[Any, Any]:
        """The turn's graph and input, with its thread read and its persona memory opened
        within the turn's deadline. A thread that cannot be read fails the turn, unless the
        request carries a draft: that still comes back, refined without the thread."""
        request = turn.request
        try:
            # Reading the thread counts against the turn's deadline like everything else.
            async with asyncio.timeout(turn.settings.deadline_s):
                if self._client_import is not None:
                    await wait_for_load(self._client_import, None)
                if remembers(request.user_id):
                    # Bounded on its own; a store that cannot open costs memory, not the thread.
                    await self._open_personas_for_turn()
                reading = self._start(request, turn.run_config())
                begun = await read_thread(self.config, reading, turn.settings.store_timeout_s)
        except Exception as exc:
            detail = str(exc) or "no answer within the turn's deadline"
            problem = f"the thread could not be read: {type(exc).__name__}: {detail}"[:500]
            if request.draft is None:
                raise RefineError(problem, step="threads", cause=exc) from exc
            # A handed-in draft still comes back: the turn runs on the request's messages.
            log.warning("threads.unavailable", error=type(exc).__name__)
            turn.without_thread(problem)
            begun = await self._start(turn.request, turn.run_config())
        turn.thread_read()
        turn.personas = self._personas if remembers(request.user_id) else None
        turn.generation = self._memory.generation(request.user_id)
        if turn.personas is not None and turn.request.thread_id is not None:
            self._memory.remember_thread(turn.personas, request.user_id, turn.request.thread_id)
        turn.log_start()
        return begun

    def _finish(self, turn: Turn, events: TurnEvents, result: RefineResult) -> RefineResult:
        """The turn's result once the graph has ended: the safety agent's question as the
        reply, learning from the turn scheduled, and the memory or thread it went without."""
        result = asking(result, events.question, events.final)
        settings, personas = turn.settings, turn.personas
        learns = settings.memory and settings.memory_learn and self._can_embed.available()
        if personas is not None and learns:
            self._memory.learn_later(
                personas, turn.request.user_id, events.final, result, settings, turn.generation
            )
        failed = self._personas_failed if remembers(turn.request.user_id) else None
        no_memory = None
        if personas is None and settings.memory and failed is not None:
            no_memory = Degradation(step="memory", reason=failed[1])
        result = degraded_by(result, no_memory, turn.lost_thread)
        turn.log_done(result)
        return result

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
        if not await self._pending_question(graph, run_config(request, UsageTracker())):
            raise RefineError(
                f"thread {thread_id!r} of user {user_id!r} has no pending question to answer",
                step="resume",
            )
        return await self.arefine(request)

    def refine(self, request: RefineRequest | Mapping[str, Any]) -> RefineResult:
        """Synchronous `arefine`, run on this refiner's own event loop thread."""
        return self._loop.run(self.arefine(request))

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
        self._memory.forgetting(user_id)
        personas = await self.personas()

        async def erase() -> dict[str, int]:
            threads = await personas.threads(user_id)
            if threads:
                checkpointer = await self._threads()
                for thread_id in threads:
                    await checkpointer.adelete_thread(thread_key(user_id, thread_id))
            return await personas.forget(user_id)

        counts = await self._memory.run(user_id, erase, "forget")
        # The deleted text must not stay in a SQLite WAL until the server stops.
        await truncate_wal(self._checkpointer, personas.store)
        log.info("memory.forgot", user_id=user_id, **counts)
        return counts

    async def wait_for_memory(self) -> None:
        """Wait until the background memory work scheduled so far (and meanwhile) is done."""
        await self._memory.drain()

    # ── loading and closing ─────────────────────────────────────────────────────────────

    async def preload(self) -> dict[str, float]:
        """Load now, in worker threads (the event loop keeps serving), what a turn would
        otherwise find still loading: the local embedding model, the router (planner router or
        hybrid), the knowledge base (when configured) and the chat-model client library.
        Returns the seconds each part took; a part that cannot load is logged and left to
        degrade the turns that need it, as it would without preloading."""
        return await preload(self.config, self._client_import)

    async def aclose(self) -> None:
        await self._memory.drain()
        await self._exit_stack.aclose()
        self._threads_graph = None
        self._personas = None
        if self._own_store and self._store is not None:
            self._store = None
            self._graph = self._build()

    def close(self) -> None:
        self._loop.stop(self.aclose)

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


def _last_user_text(messages: Sequence[Mapping[str, str]]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
