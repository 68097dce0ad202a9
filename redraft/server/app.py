"""The OpenAI-compatible refining server: `create_app()` is the ASGI app, `serve()` runs it.

Any OpenAI-SDK chatbot gets refined replies by pointing its base URL here. Threads live where the
refiner keeps them (SQLite, or PostgreSQL with `REDRAFT_DATABASE_URL`, shared by every replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, get_args

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from redraft.config import RefinerConfig, Role, ServerConfig
from redraft.errors import RefineError
from redraft.llm.calls import _is_langchain_provider
from redraft.log import configure_logging
from redraft.refiner import RefineEvent, Refiner, ReplyText, ReplyToken, TurnDone
from redraft.routing.retrain import start_retraining
from redraft.server.access import AccessLog
from redraft.server.auth import make_authenticate, user_for
from redraft.server.errors import ApiError, error_body, install_error_handlers, invalid_request
from redraft.server.limits import ConnectionLimits, GuardedProtocol, TurnSlots, read_json_body
from redraft.server.metrics import Metrics
from redraft.server.openai_api import (
    COMPLETIONS_ROUTE,
    REDRAFT_MODEL,
    SSE_DONE,
    ChatCompletionRequest,
    ChunkWriter,
    assistant_text,
    completion,
    finish_reason,
    package_version,
    publish_schemas,
    redraft_object,
    sse,
    tool_call_deltas,
)
from redraft.state import RefineRequest
from redraft.waits import within

log = structlog.get_logger("redraft.server")
HEALTH_TIMEOUT_S = 1.0
"""How long a health check waits for the thread storage: a balancer's check answers within
a second, also while the database does not answer at all."""
WORKER_HEALTHCHECK_S = 30
"""How long `serve --workers`' supervisor waits for a worker's answer before restarting it."""


class Turn:
    """One turn in its own task, holding one slot until it ends: the deadline cancels it
    cleanly, and so does a client that goes away mid-stream."""

    def __init__(
        self,
        refiner: Refiner,
        request: RefineRequest,
        config: RefinerConfig,
        *,
        timeout_s: float,
        slots: TurnSlots,
        metrics: Metrics,
        stream: bool,
    ) -> None:
        self._queue: asyncio.Queue[RefineEvent | BaseException] = asyncio.Queue()
        self._task = asyncio.create_task(
            self._run(refiner, request, config, timeout_s, slots, metrics, stream)
        )

    async def _run(
        self,
        refiner: Refiner,
        request: RefineRequest,
        config: RefinerConfig,
        timeout_s: float,
        slots: TurnSlots,
        metrics: Metrics,
        stream: bool,
    ) -> None:
        metrics.in_flight.inc()
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                # A reply that is not streamed to the client is not streamed from the editor.
                events = refiner.astream(request, config=config, reply_tokens=stream)
                async for event in events:
                    if isinstance(event, TurnDone):
                        metrics.turn_done(event.result)
                    self._queue.put_nowait(event)
        except Exception as exc:
            error: Exception
            if isinstance(exc, TimeoutError) and deadline.expired():
                outcome, error = "timeout", ApiError(504, f"no reply within {timeout_s:g} s")
            elif isinstance(exc, RefineError):
                # No message text here: the step and the error type say what an operator needs.
                log.warning("turn.failed", step=exc.step, error=type(exc.cause or exc).__name__)
                outcome, error = "failed", ApiError(502, f"no reply could be made: {exc}")
            else:
                log.exception("turn.error", error=type(exc).__name__)
                outcome, error = "failed", exc
            metrics.turn_failed(outcome, config.strategy)
            self._queue.put_nowait(error)
        finally:
            metrics.in_flight.dec()
            slots.release()

    async def events(self) -> AsyncIterator[RefineEvent]:
        """The turn's events, `TurnDone` last; a failure is raised (an ApiError when known)."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, TurnDone):
                return

    def cancel(self) -> None:
        self._task.cancel()


def turn_config(config: RefinerConfig, chat: ChatCompletionRequest) -> RefinerConfig:
    """This turn's settings: the refiner's, with the request's strategy."""
    if chat.strategy is None:
        return config
    return config.model_copy(update={"strategy": chat.strategy})


def create_app(
    config: RefinerConfig | None = None,
    server: ServerConfig | None = None,
    *,
    refiner: Refiner | None = None,
) -> FastAPI:
    """The server as an ASGI app. Settings come from the environment unless given; pass
    `refiner` to serve one you built (it is then yours to close)."""
    server = server or ServerConfig()
    owned = refiner is None
    refiner = refiner or Refiner(config)
    metrics = Metrics()
    slots = TurnSlots(server.max_concurrency)
    authenticate = make_authenticate(server.api_keys)

    # Ready once what turns need is loaded: with `preload`, in the background from the start
    # (the server answers meanwhile, and turns with a deadline do without what is loading).
    loaded = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        preloading = None
        if server.preload:
            preloading = asyncio.create_task(_preload(refiner, loaded))
        else:
            loaded.set()
        retraining = start_retraining(refiner.config, refiner.personas)  # opt-in
        yield
        if preloading is not None:
            preloading.cancel()  # the loading threads finish on their own
        if retraining is not None:
            retraining.cancel()
        if owned:
            await refiner.aclose()

    app = FastAPI(
        title="redraft",
        version=package_version(),
        summary="Refines chatbot replies before the user sees them; OpenAI-compatible.",
        lifespan=lifespan,
    )
    publish_schemas(app)
    app.add_middleware(AccessLog)
    install_error_handlers(app, lambda status: metrics.errors.labels(str(status)).inc())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Up, and its thread storage answers: a balancer sends no turns to a replica whose
        database is out of reach (503)."""
        try:
            await within(refiner.check_threads(), HEALTH_TIMEOUT_S)
        except Exception as exc:
            reason = f"thread storage: {type(exc).__name__}"
            log.warning("health.unavailable", error=type(exc).__name__)
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready for turns: preloading is done and the thread storage answers (503 before)."""
        if not loaded.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return await healthz()

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authenticate(request)
        names = [REDRAFT_MODEL, refiner.config.model_for("responder")]
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "redraft"}
                for name in dict.fromkeys(names)
            ],
        }

    @app.post("/v1/chat/completions", response_model=None, **COMPLETIONS_ROUTE)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        caller = authenticate(request)
        body = await read_json_body(request, server.max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        try:
            chat = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise invalid_request(exc) from None
        user_id = user_for(caller, chat.user)
        try:
            refine_request = refiner.validate(chat.refine_request(user_id))
        except ValidationError as exc:
            raise invalid_request(exc, rename={"user_id": "user"}) from None
        slots.acquire()
        turn = Turn(
            refiner,
            refine_request,
            turn_config(refiner.config, chat),
            timeout_s=server.request_timeout_s,
            slots=slots,
            metrics=metrics,
            stream=bool(chat.stream),
        )
        if chat.stream:
            return await stream_reply(turn, chat)
        async for event in turn.events():
            if isinstance(event, TurnDone):
                return JSONResponse(completion(event.result, chat.model))
        raise AssertionError("a turn always ends with TurnDone or an error")

    return app


async def _preload(refiner: Refiner, loaded: asyncio.Event) -> None:
    started = time.perf_counter()
    try:
        await refiner.preload()
    finally:
        loaded.set()  # a part that failed degrades the turns that need it; it is not retried
    log.info("serve.ready", seconds=round(time.perf_counter() - started, 2))


async def stream_reply(turn: Turn, chat: ChatCompletionRequest) -> StreamingResponse:
    """Stream the final reply as OpenAI chunks. The response starts with the reply's first words,
    so a turn that fails before it has any reply is still an ordinary error response."""
    events = turn.events()
    first: RefineEvent | None = None
    try:
        async for event in events:
            if isinstance(event, ReplyToken | TurnDone):
                first = event
                break
    except asyncio.CancelledError:
        turn.cancel()
        raise
    assert first is not None
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    return StreamingResponse(
        _chunks(turn, first, events, ChunkWriter(chat.model), include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _chunks(
    turn: Turn,
    first: RefineEvent,
    events: AsyncIterator[RefineEvent],
    writer: ChunkWriter,
    include_usage: bool,
) -> AsyncIterator[str]:
    text = ReplyText()
    try:
        yield writer.delta({"role": "assistant", "content": ""})
        async for event in _prepend(first, events):
            if isinstance(event, ReplyToken):
                if delta := text.add(event):
                    yield writer.delta({"content": delta})
            elif isinstance(event, TurnDone):
                reply = assistant_text(event.result)
                if rest := text.finish(reply):
                    yield writer.delta({"content": rest})
                if text.sent != reply:
                    log.warning("stream.diverged", reason="a streamed rewrite was abandoned")
                for call_delta in tool_call_deltas(event.result):
                    yield writer.delta(call_delta)
                reason = finish_reason(event.result)
                yield writer.delta({}, reason, redraft=redraft_object(event.result))
                if include_usage:
                    yield writer.usage(event.result)
        yield SSE_DONE
    except ApiError as exc:
        yield sse(error_body(exc.status, exc.message, exc.param, exc.code))
    except Exception as exc:
        yield sse(error_body(500, f"internal error: {type(exc).__name__}"))
    finally:
        turn.cancel()


async def _prepend(first: RefineEvent, rest: AsyncIterator[RefineEvent]):
    yield first
    async for event in rest:
        yield event


def serve(
    config: RefinerConfig,
    server: ServerConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve until interrupted. Port 0 takes a free port; the address is printed first.

    `server.workers` > 1: that many processes accept on the one socket (uvicorn's supervisor
    restarts one that dies); each builds its app from the environment and preloads. They share
    threads and personas through the database: SQLite (threads in WAL mode; every write waits
    its turn) or PostgreSQL. Threads kept in memory cannot be shared, so that is refused.
    """
    if server.workers > 1 and config.checkpointer_kind == "memory":
        raise ValueError(
            "--workers: threads kept in memory (REDRAFT_CHECKPOINTER=memory) are not shared "
            "between worker processes; use sqlite (the default) or postgres"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if (missing := missing_provider(config)) is not None:
        sock.close()
        raise ValueError(missing)  # every turn would fail: say what to set, and do not start
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    configure_logging(config.log_level)  # to stderr, as JSON lines
    if server.workers == 1:
        app: Any = create_app(config, server)
    else:
        # The workers are spawned: they read their settings from the environment.
        os.environ["REDRAFT_PRELOAD"] = "true" if server.preload else "false"
        app = f"{__name__}:app_from_environment"
    if not server.api_keys and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serve.no_auth", host=host, hint="set REDRAFT_API_KEYS")
    print(f"redraft serving on http://{shown}:{bound}", flush=True)
    settings = GuardedConfig(
        app,
        factory=server.workers > 1,
        workers=server.workers,
        # A worker busy loading the model answers the supervisor's pings late: not dead.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        timeout_graceful_shutdown=5,
        log_level="info",
        access_log=False,  # AccessLog writes the one line per request, with ms and request id
        http=GuardedProtocol,
    )
    settings.connection_limits = ConnectionLimits.of(server)
    if server.workers == 1:
        uvicorn.Server(settings).run(sockets=[sock])
    else:
        Multiprocess(settings, sockets=[sock]).run()


class GuardedConfig(uvicorn.Config):
    """uvicorn's settings with the limits GuardedProtocol reads from them (uvicorn hands its
    protocols the config). `serve --workers` pickles the config into each worker, limits too."""

    connection_limits: ConnectionLimits


def missing_provider(config: RefinerConfig) -> str | None:
    """What to set when a role's model needs an OpenAI-compatible provider and none is
    configured (a `provider:model` name brings its own)."""
    key = config.api_key.get_secret_value().strip() if config.api_key else ""
    if key or config.base_url:
        return None
    if all(_is_langchain_provider(config.model_for(role)) for role in get_args(Role)):
        return None
    return (
        "no model provider configured: set OPENAI_API_KEY for OpenAI, or OPENAI_BASE_URL for an "
        "OpenAI-compatible server (Ollama, vLLM, llama.cpp); `redraft demo` runs offline"
    )


def app_from_environment() -> FastAPI:
    """The app of one `serve --workers` process, with the settings of the environment."""
    config = RefinerConfig()
    configure_logging(config.log_level)  # a spawned process starts without the parent's
    return create_app(config, ServerConfig())
