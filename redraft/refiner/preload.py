"""Loading ahead of the first turn what would otherwise make it slow: the chat-model client
library, the local embedding model, the router and the knowledge base."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from concurrent.futures import Future
from typing import Any

import structlog

from redraft.config import RefinerConfig
from redraft.embeddings import LocalEmbeddings, local_model_installed, needs_local_model

log = structlog.get_logger("redraft")

_client_import: Future[Any] | None = None
_client_import_lock = threading.Lock()


def start_client_import() -> Future[Any]:
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


async def preload(cfg: RefinerConfig, client_import: Future[Any] | None) -> dict[str, float]:
    """Load, in worker threads (the event loop keeps serving), the parts `cfg` uses, and
    `client_import` when it is given. Returns the seconds each part took; a part that cannot
    load is logged and left to degrade the turns that need it."""
    from redraft.knowledge.retrieval import configured_knowledge_base
    from redraft.routing.plans import start_router_load

    parts: list[tuple[str, Any]] = []
    if client_import is not None:
        parts.append(("chat_models", client_import.result))
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
