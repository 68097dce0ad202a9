"""An OpenAI-compatible chat server for offline tests and benchmarks.

``FakeProvider`` speaks enough of the Chat Completions wire protocol for the real
``openai`` SDK and ``langchain_openai.ChatOpenAI`` to work against it unchanged, so tests
exercise the same HTTP, streaming, retry and parsing code paths as production. Responses
are scripted per redraft agent (see :mod:`redraft.testing.agents`), and every call is
logged with timings so tests can assert on prompts and on concurrency.

Example::

    with FakeProvider(latency_s=0.2) as provider:
        provider.script("critic", {"verdict": "ok"})
        llm = ChatOpenAI(base_url=provider.base_url, api_key="test", model="gpt-4o-mini")
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.responses import Response as HTTPResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from redraft.testing.agents import agent_of, content_text
from redraft.testing.schemas import instance_for_schema

__all__ = ["Fail", "FakeProvider", "Fault", "RecordedCall", "Response", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """A scripted tool call; ``args=None`` fills arguments from the tool's JSON schema (a list
    is sent as a JSON array: a structured output whose schema is one)."""

    name: str
    args: dict[str, Any] | list[Any] | str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Fail:
    """A scripted error answer, rendered as an OpenAI-style error body."""

    status: int = 500
    message: str = "Injected failure"
    retry_after: float | None = None


@dataclass(frozen=True)
class Fault:
    """A broken answer, for fault injection beyond HTTP errors.

    - ``reset``: the connection is reset before any response;
    - ``hang``: nothing is answered for ``seconds`` (by default longer than any client waits),
      unless the client gives up first; then the built-in fallback answer;
    - ``truncate``: the response stops halfway (a stream without its end, a body cut short)
      and the connection drops;
    - ``empty_choices``: a 200 answer whose ``choices`` list is empty;
    - ``invalid_json``: the answer cut in half, so a structured output does not parse.
    """

    kind: Literal["reset", "hang", "truncate", "empty_choices", "invalid_json"]
    seconds: float = 3600.0


@dataclass
class RecordedCall:
    """One chat completion request as received, plus what was answered and when."""

    agent: str
    model: str
    messages: list[dict[str, Any]]
    response_format: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    stream: bool
    started: float
    ended: float | None = None
    status: int | None = None
    response: Any = None
    usage: dict[str, int] | None = None
    fault: str | None = None
    body: dict[str, Any] = field(default_factory=dict, repr=False)
    """The whole request body as received."""


Response: TypeAlias = (
    str
    | dict[str, Any]
    | list[Any]
    | BaseModel
    | ToolCall
    | Fail
    | Fault
    | Callable[[RecordedCall], Any]
    | None
)
"""A scripted answer. ``None`` (also as a callable's result) means the built-in fallback."""

_ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
# Tokens are approximated as whitespace-separated words, both for usage and for streaming.
_TOKEN = re.compile(r"\s*\S+")


@dataclass
class _Reply:
    """A rendered assistant turn: either text content or tool calls."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    value: Any = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


@dataclass
class _FailureRule:
    fail: Fail
    remaining: int
    agent: str | None


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeProvider:
    """OpenAI-compatible HTTP server on ``127.0.0.1`` with per-agent scripted answers.

    ``error_rate`` fails that share of calls at random: with ``error_status``, or with one of
    ``faults`` (``Fail`` or ``Fault`` answers) drawn at random.

    Runs uvicorn in a daemon thread so it works from sync and async tests alike. All
    settings passed to the constructor are plain attributes and can be changed while the
    server runs; scripting methods are thread-safe.
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = ("gpt-4o-mini",),
        latency_s: float = 0.0,
        tokens_per_s: float | None = None,
        error_rate: float = 0.0,
        error_status: int = 500,
        faults: Sequence[Fail | Fault] = (),
        seed: int = 0,
    ) -> None:
        self.models = list(models)
        self.owned_by = "redraft"
        """What `/v1/models` says owns each model ("me" is llama-cpp-python's server)."""
        self.latency_s = latency_s
        self.tokens_per_s = tokens_per_s
        self.error_rate = error_rate
        self.error_status = error_status
        self.faults = list(faults)
        self.calls: list[RecordedCall] = []
        self.app = self._build_app()
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._scripts: defaultdict[str, deque[Response]] = defaultdict(deque)
        self._defaults: dict[str, Response] = {}
        self._failures: list[_FailureRule] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to pass as ``base_url`` to OpenAI clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._port is None:
            raise RuntimeError("FakeProvider is not running; call start() first")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self, timeout_s: float = 10.0) -> FakeProvider:
        """Serve on a free port in a background thread; returns once it accepts requests."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already running")
        # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections;
        # without it Nagle + delayed ACKs add ~40 ms to every keep-alive request.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeProvider failed to start")
            time.sleep(0.01)
        self._port = sock.getsockname()[1]
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread; safe to call when not running."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = self._port = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- scripting ---------------------------------------------------------------------

    def script(self, agent: str, *responses: Response) -> None:
        """Queue responses for ``agent``'s next calls, consumed in order."""
        with self._lock:
            self._scripts[agent].extend(responses)

    def set_default(self, agent: str, response: Response) -> None:
        """Answer ``agent`` with ``response`` whenever its queue is empty."""
        with self._lock:
            self._defaults[agent] = response

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        agent: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next ``n`` calls (of ``agent``, or of any agent) without consuming scripts."""
        fail = Fail(status=status, retry_after=retry_after)
        with self._lock:
            self._failures.append(_FailureRule(fail, n, agent))

    def reset(self) -> None:
        """Clear the call log, scripts, defaults and failure injection (incl. ``error_rate``)."""
        with self._lock:
            self.calls.clear()
            self._scripts.clear()
            self._defaults.clear()
            self._failures.clear()
            self.error_rate = 0.0
            self.faults = []
            self._rng = random.Random(self._seed)

    # -- inspection --------------------------------------------------------------------

    def calls_for(self, agent: str) -> list[RecordedCall]:
        """The logged calls issued by ``agent``, in arrival order."""
        with self._lock:
            return [call for call in self.calls if call.agent == agent]

    def max_in_flight(self, agents: Iterable[str] | None = None) -> int:
        """Most calls (optionally among ``agents``) whose request/response spans overlapped."""
        selected = {agents} if isinstance(agents, str) else None if agents is None else set(agents)
        with self._lock:
            calls = [c for c in self.calls if selected is None or c.agent in selected]
        # At equal timestamps ends (-1) sort before starts (+1): touching spans don't overlap.
        events = sorted(
            [(call.started, 1) for call in calls]
            + [(math.inf if call.ended is None else call.ended, -1) for call in calls]
        )
        in_flight = peak = 0
        for _, delta in events:
            in_flight += delta
            peak = max(peak, in_flight)
        return peak

    # -- HTTP --------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="redraft FakeProvider", docs_url=None, redoc_url=None)

        @app.exception_handler(HTTPException)
        async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
            return _error_response(exc.status_code, str(exc.detail))

        @app.exception_handler(_ApiError)
        async def api_error(_: Request, exc: _ApiError) -> JSONResponse:
            return _error_response(exc.status, exc.message)

        @app.get("/v1/models")
        async def list_models() -> dict[str, Any]:
            data = [
                {"id": model, "object": "model", "created": 0, "owned_by": self.owned_by}
                for model in self.models
            ]
            return {"object": "list", "data": data}

        app.post("/v1/chat/completions", response_model=None)(self._chat_completions)
        return app

    async def _chat_completions(self, request: Request) -> HTTPResponse:
        body = await _request_body(request)
        call = self._record(body)
        try:
            response = self._next_response(call)
            while callable(response):
                response = response(call)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if isinstance(response, Fail):
                self._finish(call, response.status, response.message)
                retry_after = response.retry_after
                headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
                return _error_response(response.status, response.message, headers)
            fault = response if isinstance(response, Fault) else None
            if fault is not None:
                call.fault = fault.kind
                if fault.kind == "reset":
                    self._finish(call, 0, "connection reset")
                    await self._drop_connection(request, reset=True)
                    return HTTPResponse(status_code=500)  # never reaches the client
                if fault.kind == "hang" and await _client_gone(request, fault.seconds):
                    self._finish(call, 499, "the client gave up waiting")
                    return HTTPResponse(status_code=499)
                # The other faults break the answer the agent would have had.
                with self._lock:
                    response = self._defaults.get(call.agent)
            reply = _render(call, response)
            if fault is not None and fault.kind == "invalid_json":
                reply = _cut_in_half(reply)
        except Exception as exc:
            self._finish(call, 500, repr(exc))
            raise _ApiError(500, f"FakeProvider could not answer: {exc!r}") from exc

        usage = _usage(call, reply)
        call.response, call.usage = reply.value, usage
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        broken = fault.kind if fault is not None else None
        if call.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = self._stream(call, reply, completion_id, include_usage)
            if broken == "empty_choices":
                chunks = _no_choices_stream(call, completion_id)
            elif broken == "truncate":
                chunks = self._truncated(request, chunks, keep=max(1, _delta_events(reply) // 2))
            return StreamingResponse(chunks, media_type="text/event-stream")
        if self.tokens_per_s:
            await asyncio.sleep(usage["completion_tokens"] / self.tokens_per_s)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call_json(tool_call) for tool_call in reply.tool_calls]
        completion = {
            **_envelope(completion_id, call.model, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage,
        }
        self._finish(call, 200)
        if broken == "empty_choices":
            completion["choices"] = []
        elif broken == "truncate":
            text = json.dumps(completion)
            halves = _iterate([text[: len(text) // 2], text[len(text) // 2 :]])
            chunks = self._truncated(request, halves, keep=1)
            return StreamingResponse(chunks, media_type="application/json")
        return JSONResponse(completion)

    async def _truncated(
        self, request: Request, chunks: AsyncIterator[str], keep: int
    ) -> AsyncIterator[str]:
        """The first ``keep`` pieces of a response; then the connection closes midway."""
        sent = 0
        async for chunk in chunks:
            if sent == keep:
                break
            yield chunk
            sent += 1
        await chunks.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)  # let the pieces leave before the connection goes
        await self._drop_connection(request, reset=False)

    async def _drop_connection(self, request: Request, *, reset: bool) -> None:
        """End the request's TCP connection under the server's feet: with a reset (RST), or
        closed as if the response had ended (FIN) midway."""
        if self._server is None:
            raise RuntimeError("connection faults need the FakeProvider's own server")
        client = tuple(request.scope.get("client") or ())
        for protocol in list(self._server.server_state.connections):
            if getattr(protocol, "client", None) != client:
                continue
            transport = protocol.transport
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    linger = struct.pack("ii", 1, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                transport.abort()
            else:
                transport.close()
        await asyncio.sleep(0)  # the server notices before the handler returns

    async def _stream(
        self, call: RecordedCall, reply: _Reply, completion_id: str, include_usage: bool
    ) -> AsyncIterator[str]:
        """Yield SSE events the way OpenAI does: role, deltas, finish, usage, ``[DONE]``."""
        envelope = _envelope(completion_id, call.model, "chat.completion.chunk")

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return _sse({**envelope, "choices": [choice]})

        try:
            yield event({"role": "assistant", "content": "" if reply.content is not None else None})
            for piece in _TOKEN.findall(reply.content or ""):
                await self._pace()
                yield event({"content": piece})
            for index, tool_call in enumerate(reply.tool_calls):
                function = {"name": tool_call.name, "arguments": ""}
                opening = {"index": index, "id": tool_call.id, "type": "function"}
                yield event({"tool_calls": [{**opening, "function": function}]})
                for piece in _TOKEN.findall(_arguments(tool_call)):
                    await self._pace()
                    yield event(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
            yield event({}, reply.finish_reason)
            if include_usage:
                yield _sse({**envelope, "choices": [], "usage": call.usage})
            self._finish(call, 200)
            yield "data: [DONE]\n\n"
        finally:
            if call.ended is None:  # the client went away mid-stream
                self._finish(call, 499)

    async def _pace(self) -> None:
        if self.tokens_per_s:
            await asyncio.sleep(1 / self.tokens_per_s)

    # -- bookkeeping -------------------------------------------------------------------

    def _record(self, body: dict[str, Any]) -> RecordedCall:
        call = RecordedCall(
            agent=agent_of(body["messages"]),
            model=body["model"],
            messages=body["messages"],
            response_format=body.get("response_format"),
            tools=body.get("tools"),
            tool_choice=body.get("tool_choice"),
            stream=bool(body.get("stream")),
            started=time.monotonic(),
            body=body,
        )
        with self._lock:
            self.calls.append(call)
        return call

    def _next_response(self, call: RecordedCall) -> Response:
        """Pick the answer: injected failures first, then the agent's queue, then its default."""
        with self._lock:
            for rule in self._failures:
                if rule.agent in (None, call.agent):
                    rule.remaining -= 1
                    self._failures = [r for r in self._failures if r.remaining > 0]
                    return rule.fail
            if self.error_rate and self._rng.random() < self.error_rate:
                if self.faults:
                    return self._rng.choice(self.faults)
                return Fail(self.error_status, "Injected random failure")
            if self._scripts[call.agent]:
                return self._scripts[call.agent].popleft()
            return self._defaults.get(call.agent)

    @staticmethod
    def _finish(call: RecordedCall, status: int, error: str | None = None) -> None:
        call.status, call.ended = status, time.monotonic()
        if error is not None:
            call.response = error


# -- rendering (pure functions of the recorded call) -------------------------------------


async def _request_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise _ApiError(400, "'model' is required and must be a string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ApiError(400, "'messages' must be a non-empty list")
    if not all(isinstance(message, dict) for message in messages):
        raise _ApiError(400, "every entry of 'messages' must be an object")
    return body


def _render(call: RecordedCall, response: Response) -> _Reply:
    """Turn a scripted response (or ``None`` for the fallback) into an assistant turn."""
    target = _tool_target(call)
    if response is None:
        response = _fallback(call, forced=_forced_tool(call))
    if isinstance(response, BaseModel):
        response = response.model_dump(mode="json")
    if isinstance(response, ToolCall) or (
        isinstance(response, list) and response and all(isinstance(r, ToolCall) for r in response)
    ):
        scripted = response if isinstance(response, list) else [response]
        tool_calls = [_complete(call, tool_call) for tool_call in scripted]
        return _Reply(
            tool_calls=tool_calls, value=tool_calls[0] if len(tool_calls) == 1 else tool_calls
        )
    if isinstance(response, dict | list) and target is not None:
        tool_call = _complete(call, ToolCall(target, response))
        return _Reply(tool_calls=[tool_call], value=tool_call)
    if isinstance(response, dict | list):
        return _Reply(content=json.dumps(response), value=response)
    if isinstance(response, str):
        return _Reply(content=response, value=_parsed(response) if _structured(call) else response)
    raise TypeError(f"unsupported scripted response {response!r}")


def _fallback(call: RecordedCall, forced: str | None) -> Response:
    if forced is not None:
        return ToolCall(forced)
    response_format = call.response_format or {}
    if response_format.get("type") == "json_schema":
        return instance_for_schema(response_format.get("json_schema", {}).get("schema", {}))
    if response_format.get("type") == "json_object":
        return {}
    users = [m for m in call.messages if m.get("role") == "user"]
    last = content_text(users[-1].get("content")) if users else ""
    return f"Scripted reply to: {last[:80]}"


def _forced_tool(call: RecordedCall) -> str | None:
    """The function the request obliges the model to call, if any."""
    choice, tools = call.tool_choice, call.tools or []
    if isinstance(choice, dict):
        return choice.get("function", {}).get("name")
    if choice == "required" and tools:
        return tools[0]["function"]["name"]
    return None


def _tool_target(call: RecordedCall) -> str | None:
    """The function a scripted dict becomes arguments for: forced, or the sole purpose."""
    forced = _forced_tool(call)
    if forced is not None:
        return forced
    if not call.tools or call.tool_choice == "none" or _structured(call):
        return None
    return call.tools[0]["function"]["name"]


def _structured(call: RecordedCall) -> bool:
    return (call.response_format or {}).get("type") in ("json_schema", "json_object")


def _complete(call: RecordedCall, tool_call: ToolCall) -> ToolCall:
    """Fill in a scripted tool call's missing id and arguments."""
    args = tool_call.args
    if args is None:
        schemas = {
            tool["function"]["name"]: tool["function"].get("parameters", {})
            for tool in call.tools or []
        }
        args = instance_for_schema(schemas.get(tool_call.name, {"type": "object"}))
    return ToolCall(tool_call.name, args, tool_call.id or f"call_{uuid.uuid4().hex[:24]}")


def _arguments(tool_call: ToolCall) -> str:
    return tool_call.args if isinstance(tool_call.args, str) else json.dumps(tool_call.args)


def _tool_call_json(tool_call: ToolCall) -> dict[str, Any]:
    return {
        "id": tool_call.id,
        "type": "function",
        "function": {"name": tool_call.name, "arguments": _arguments(tool_call)},
    }


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _usage(call: RecordedCall, reply: _Reply) -> dict[str, int]:
    """Approximate token counts as whitespace-separated words (at least one each)."""
    prompt = sum(len(content_text(m.get("content")).split()) for m in call.messages)
    output = reply.content or " ".join(_arguments(tool_call) for tool_call in reply.tool_calls)
    prompt_tokens, completion_tokens = max(prompt, 1), max(len(output.split()), 1)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(completion_id: str, model: str, kind: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_redraft_fake",
    }


async def _client_gone(request: Request, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as the client closes the connection."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.02)
    return False


def _cut_in_half(reply: _Reply) -> _Reply:
    """The first half of an answer's text or tool-call arguments (no longer valid JSON)."""
    if reply.tool_calls:
        cut = [
            ToolCall(t.name, _arguments(t)[: len(_arguments(t)) // 2], t.id)
            for t in reply.tool_calls
        ]
        return _Reply(tool_calls=cut, value=cut[0] if len(cut) == 1 else cut)
    text = reply.content or ""
    return _Reply(content=text[: len(text) // 2], value=text[: len(text) // 2])


def _delta_events(reply: _Reply) -> int:
    """How many delta events `FakeProvider._stream` sends before the finish event."""
    arguments = sum(1 + len(_TOKEN.findall(_arguments(t))) for t in reply.tool_calls)
    return 1 + len(_TOKEN.findall(reply.content or "")) + arguments


async def _no_choices_stream(call: RecordedCall, completion_id: str) -> AsyncIterator[str]:
    yield _sse({**_envelope(completion_id, call.model, "chat.completion.chunk"), "choices": []})
    yield "data: [DONE]\n\n"


async def _iterate(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind, code = _ERRORS.get(
        status,
        ("server_error", "server_error") if status >= 500 else _ERRORS[400],
    )
    error = {"message": message, "type": kind, "code": code, "param": None}
    return JSONResponse({"error": error}, status_code=status, headers=headers)
