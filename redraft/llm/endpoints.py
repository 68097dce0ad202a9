"""What redraft learns about each model endpoint, once per process.

An endpoint is a base URL and a model name. Real servers differ: llama-cpp-python's answers a
`json_schema` response format with HTTP 500 and serves one request at a time; llama.cpp's and
vLLM's report their context window; OpenAI's does everything. Rather than asking users to know
this, redraft asks the server (`GET /models`, once), tries the structured-output modes in turn
and keeps what worked.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from langchain_core.language_models import BaseChatModel

log = structlog.get_logger("redraft")

MODES = ("json_schema", "function_calling", "json_mode")
DEFAULT_CONTEXT_TOKENS = 8192
PROBE_TIMEOUT_S = 3.0
CONTEXT_FIELDS = (
    "max_model_len",
    "context_length",
    "context_window",
    "max_context_length",
    "n_ctx",
)


@dataclass(frozen=True)
class CallPolicy:
    """How calls to one chat model are made: redraft's settings for a model it built."""

    timeout_s: float | None = None
    retries: int = 0
    concurrency: int | None = None
    context_tokens: int | None = None
    api_key: str | None = None


@dataclass
class Endpoint:
    """One base URL and model, and what is known of it."""

    base_url: str | None
    model: str
    mode: str | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    reported_context: int | None = None
    serial: bool = False
    probed: bool = False
    _probe_lock: asyncio.Lock | None = None
    _slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    @property
    def name(self) -> str:
        return f"{self.model} at {self.base_url}" if self.base_url else self.model

    def candidates(self, method: str) -> list[str]:
        """Structured-output modes to try: the one asked for, or (auto) the one that worked,
        else those not yet rejected, in order."""
        if method != "auto":
            return [method]
        if self.mode is not None:
            return [self.mode]
        left = [m for m in MODES if m not in self.rejected]
        return left or list(MODES)

    def settle(self, mode: str) -> None:
        if self.mode == mode:
            return
        self.mode = mode
        why = "; ".join(f"{m}: {reason}" for m, reason in self.rejected.items())
        log.info(
            "structured output mode chosen",
            endpoint=self.name,
            mode=mode,
            why=f"after {why}" if why else "the first mode tried worked",
        )

    def reject(self, mode: str, reason: str) -> None:
        self.rejected[mode] = reason[:300]

    def context_tokens(self, policy: CallPolicy) -> int:
        return policy.context_tokens or self.reported_context or DEFAULT_CONTEXT_TOKENS

    def prompt_budget(self, policy: CallPolicy) -> int:
        """Tokens a prompt may take: the context less room for the output."""
        context = self.context_tokens(policy)
        return context - max(256, min(1024, context // 4))

    def output_cap(self, policy: CallPolicy) -> int | None:
        """Most tokens a reply may take, on a server that runs one request at a time: the room
        the prompt budget leaves. A small model that loops otherwise writes until its window
        is full (minutes on a CPU) while every other call waits. None: not capped."""
        if not self.serial:
            return None
        return self.context_tokens(policy) - self.prompt_budget(policy)

    def slot(self, policy: CallPolicy) -> asyncio.Semaphore | None:
        """This event loop's semaphore bounding calls in flight, when they are bounded."""
        limit = policy.concurrency or (1 if self.serial else None)
        if limit is None:
            return None
        loop = asyncio.get_running_loop()
        semaphore = self._slots.get(loop)
        if semaphore is None:
            semaphore = self._slots[loop] = asyncio.Semaphore(limit)
        return semaphore

    async def probe(self, policy: CallPolicy) -> None:
        """Ask the server about itself once: its context window and whether it serves one
        request at a time. Any failure leaves the defaults."""
        if self.probed or not self.base_url:
            return
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self.probed:
                return
            try:
                await self._probe(policy)
            except Exception as exc:  # a server without /models is fine
                log.debug("endpoint probe failed", endpoint=self.name, error=repr(exc))
            self.probed = True

    async def _probe(self, policy: CallPolicy) -> None:
        headers = {"Authorization": f"Bearer {policy.api_key}"} if policy.api_key else {}
        timeout = min(PROBE_TIMEOUT_S, policy.timeout_s or PROBE_TIMEOUT_S)
        base = str(self.base_url).rstrip("/")
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            response = await client.get(f"{base}/models")
            response.raise_for_status()
            body = response.json()
            entries = body.get("data") if isinstance(body, Mapping) else None
            entry = _entry_for(entries if isinstance(entries, list) else [], self.model)
            if entry is None:
                return
            self.reported_context = _context_of(entry)
            # llama-cpp-python's server ("owned_by": "me") runs one completion at a time.
            self.serial = entry.get("owned_by") == "me"
            if entry.get("owned_by") == "llamacpp":  # llama.cpp's llama-server: its slots
                props = await client.get(f"{base.removesuffix('/v1')}/props")
                if props.is_success:
                    info = props.json()
                    slots = info.get("total_slots") if isinstance(info, Mapping) else None
                    self.serial = slots == 1
                    settings = info.get("default_generation_settings") or {}
                    n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
                    if isinstance(n_ctx, int) and n_ctx > 0:
                        self.reported_context = n_ctx
        log.info(
            "endpoint probed",
            endpoint=self.name,
            context_tokens=self.reported_context,
            serial=self.serial,
        )


def _entry_for(entries: list[Any], model: str) -> Mapping[str, Any] | None:
    mappings = [e for e in entries if isinstance(e, Mapping)]
    exact = next((e for e in mappings if e.get("id") == model), None)
    # One model served (llama.cpp serves whatever name it is asked for).
    return exact or (mappings[0] if len(mappings) == 1 else None)


def _context_of(entry: Mapping[str, Any]) -> int | None:
    places = [entry, entry.get("meta") or {}]
    for place in places:
        if not isinstance(place, Mapping):
            continue
        for key in CONTEXT_FIELDS:
            value = place.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


_endpoints: dict[tuple[str, str], Endpoint] = {}
_policies: dict[int, CallPolicy] = {}


def endpoint_of(model: BaseChatModel) -> Endpoint:
    """The endpoint a chat model talks to: shared by every model object for the same base URL
    and model name; a model without a base URL (a test double, another provider) is its own."""
    base_url = getattr(model, "openai_api_base", None)
    name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or "")
    if base_url is None:
        key = (f"object:{id(model)}", name or type(model).__name__)
        if key not in _endpoints:
            weakref.finalize(model, _endpoints.pop, key, None)
    else:
        key = (str(base_url), name)
    endpoint = _endpoints.get(key)
    if endpoint is None:
        endpoint = _endpoints[key] = Endpoint(base_url=base_url, model=name or "model")
    return endpoint


def known_endpoint(base_url: str, model: str) -> Endpoint | None:
    """What this process learned of the endpoint so far (None: nothing, not called yet)."""
    return _endpoints.get((base_url, model))


def set_policy(model: BaseChatModel, policy: CallPolicy) -> None:
    _policies[id(model)] = policy
    weakref.finalize(model, _policies.pop, id(model), None)


def policy_of(model: BaseChatModel) -> CallPolicy:
    """The policy redraft set when it built the model; models given from outside keep their
    own retries and timeouts (none added)."""
    return _policies.get(id(model), CallPolicy())


def forget_endpoints() -> None:
    """Start over: what was learned of every endpoint is dropped (tests; a changed server)."""
    _endpoints.clear()
