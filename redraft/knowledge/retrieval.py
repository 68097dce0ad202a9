"""Evidence for a turn: the request's passages, plus what the retrievers find for the query.

The retrievers — the local knowledge base when configured, and any LangChain `BaseRetriever`
given to the `Refiner` — are asked concurrently, each under a timeout. One that fails or times
out is reported (the turn degrades) and the others' passages are still used. Passage ids are
stable: the request's passages keep p1..pn, retrieved ones continue the numbering and carry
their source, so a citation can name the file it came from.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from redraft.config import RefinerConfig
from redraft.embeddings import ModelLoading, model_loaded, needs_local_model, start_loading
from redraft.knowledge.base import KnowledgeBase, SearchMode, store_for
from redraft.state import Passage
from redraft.waits import outage_of, within

# A retriever may return whole documents; a passage longer than this is cut.
MAX_PASSAGE_CHARS = 4000


class KnowledgeBaseRetriever(BaseRetriever):
    """The knowledge base as a LangChain retriever (it works in any LangChain chain, too).

    Every call checks the index first, so a missing, corrupt or mismatched index fails the
    call with a clear error instead of returning nothing.
    """

    kb: Any
    k: int = 4
    mode: SearchMode = "hybrid"

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        self.kb.check()
        return [
            Document(
                page_content=hit.text,
                metadata={"source": hit.source, "chunk": hit.chunk, "score": hit.score},
            )
            for hit in self.kb.search(query, self.k, self.mode)
        ]


_open: dict[tuple[str, str], KnowledgeBase] = {}
_open_lock = threading.Lock()


def configured_knowledge_base(config: RefinerConfig, *, load: bool = True) -> KnowledgeBase | None:
    """The knowledge base a turn should search, or None (kb=off, or kb=auto and none exists).

    Opened once per location and process, with the embedding model loaded, so the retriever
    timeout never includes loading the model. `load=False`: while the local model is still
    loading, raise (the load goes on in the background) instead of waiting for it.
    Blocking: call it from a worker thread.
    """
    if config.kb == "off":
        return None
    # Whether one exists is asked before the embedding model is needed: without the
    # `embeddings` extra, kb=auto with no knowledge base is simply no knowledge base.
    if config.kb == "auto" and not store_for(config).exists():
        return None
    fresh = KnowledgeBase.from_config(config)
    key = (fresh.store.location, config.embeddings)
    with _open_lock:
        kb = _open.get(key)
    if kb is None:
        if not load and needs_local_model(config) and not model_loaded():
            start_loading()
            raise ModelLoading("skipped: the embedding model is still loading")
        warm_up = getattr(fresh.embeddings, "warm_up", None)
        if warm_up is not None:
            warm_up()
        with _open_lock:
            kb = _open.setdefault(key, fresh)
    return kb


def request_passages(knowledge: Sequence[str]) -> list[Passage]:
    return [Passage(id=f"p{i}", text=text) for i, text in enumerate(knowledge, 1)]


async def gather_evidence(
    query: str,
    retrievers: Sequence[BaseRetriever],
    *,
    known: Sequence[Passage],
    k: int,
    timeout_s: float,
) -> tuple[list[Passage], list[str]]:
    """Ask every retriever for `query` at once; returns the new passages (ids after `known`,
    duplicates of known text dropped, at most `k` per retriever) and one line per failure."""
    results = await asyncio.gather(
        *(asyncio.wait_for(r.ainvoke(query), timeout_s) for r in retrievers),
        return_exceptions=True,
    )
    seen = {p.text for p in known}
    passages: list[Passage] = []
    failures: list[str] = []
    for retriever, result in zip(retrievers, results, strict=True):
        name = retriever.get_name()
        if isinstance(result, TimeoutError):
            failures.append(f"{name}: no answer within {timeout_s:g} s")
            continue
        if isinstance(result, BaseException):
            failures.append(f"{name}: {type(result).__name__}: {result}")
            continue
        for document in result[:k]:
            text = document.page_content.strip()[:MAX_PASSAGE_CHARS]
            if not text or text in seen:
                continue
            seen.add(text)
            chunk = document.metadata.get("chunk")
            passages.append(
                Passage(
                    id=f"p{len(known) + len(passages) + 1}",
                    text=text,
                    source=str(document.metadata.get("source") or name),
                    chunk=chunk if isinstance(chunk, int) else None,
                )
            )
    return passages, failures


async def turn_evidence(
    config: RefinerConfig,
    retrievers: Sequence[BaseRetriever],
    *,
    query: str,
    knowledge: Sequence[str],
) -> tuple[list[Passage], list[str]]:
    """All the evidence of a turn: the request's passages, then the knowledge base's (when
    configured) and the other retrievers' for `query`. Never raises: each problem comes back as
    one line, for the turn's `degraded`."""
    known = request_passages(knowledge)
    sources = list(retrievers)
    failures: list[str] = []
    try:
        # A turn with a deadline does not wait for the embedding model to load.
        load = config.deadline_s is None
        # Bounded like a search: a database that does not answer must not hold the turn.
        if config.database_url and config.kb != "off":
            outage_of(config.database_url).check()
        kb = await within(
            asyncio.to_thread(configured_knowledge_base, config, load=load),
            config.retriever_timeout_s,
        )
    except ModelLoading as exc:
        kb = None
        failures.append(f"knowledge base: {exc}")
    except Exception as exc:
        kb = None
        failures.append(f"knowledge base: {type(exc).__name__}: {exc}")
    if kb is not None:
        sources.insert(0, KnowledgeBaseRetriever(kb=kb, k=config.retrieval_k))
    if not sources or not query.strip():
        return known, failures
    found, failed = await gather_evidence(
        query, sources, known=known, k=config.retrieval_k, timeout_s=config.retriever_timeout_s
    )
    return [*known, *found], failures + failed
