"""Personas on any LangGraph `BaseStore`: one namespace per user, semantic search over facts.

Layout, under `("redraft", "user", <user>)`: `profile` (name, style, one item per PENGUIN
attribute, so that writers of different attributes never overwrite each other), `facts`, `edits`
(CIPHER preferences, searched by their context), `threads` (the user's thread ids, so that
`forget` can delete them from the checkpointer), `questions` (what the safety agent asked outside
a thread, and how the answer was read) and, with Python ranking, `versions`.

Stores with a vector index (`InMemoryStore`, `SqliteStore` with sqlite-vec) rank natively. A store
without one — PostgreSQL here, which has no pgvector — keeps each vector in its item and the
ranking happens in Python.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import numpy as np
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, GetOp, Item, PutOp, Result, SearchItem, SearchOp
from pydantic import BaseModel, Field

from redraft.config import RefinerConfig
from redraft.db import postgres_pool, sqlite_connection
from redraft.personas.model import (
    PENGUIN_ATTRIBUTES,
    Attribute,
    EditPreference,
    Fact,
    FactSource,
    Profile,
    Style,
    new_id,
    normalise,
    now,
)
from redraft.personas.scrub import secure_delete
from redraft.state import is_penguin_attribute
from redraft.waits import outage_of

ROOT = "redraft"
PROFILE, FACTS, EDITS, THREADS, VERSIONS = "profile", "facts", "edits", "threads", "versions"
QUESTIONS = "questions"
NAME_KEY, STYLE_KEY = "name", "style"
VECTOR = "vector"
"""Key of the embedding kept inside an item when the store has no vector index (float16, base64:
half the bytes to read of float32, and ranking is not affected)."""
PAGE = 1000
CACHED_NAMESPACES = 64
"""Namespaces whose vectors a process keeps (Python ranking only), least recently used out."""
ACTIVE = {"status": "active"}
META, VECTORS_KEY = (ROOT, "meta"), "vectors"
SQLITE_VEC, ITEMS = "sqlite-vec", "items"


def user_label(user_id: str) -> str:
    """A namespace label for a user id: labels may not contain '.' or NUL, so these are
    percent-encoded (reversibly; no two ids share a label)."""
    return user_id.replace("%", "%25").replace(".", "%2E").replace("\x00", "%00")


def user_namespace(user_id: str) -> tuple[str, ...]:
    return (ROOT, "user", user_label(user_id))


def question_key(text: str) -> str:
    """The key of an asked question: the same for the text as the client shows it again, whatever
    its case, spacing or final period."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:32]


class AskedQuestion(BaseModel):
    """A question the safety agent asked outside a thread, where nothing else keeps it; with the
    answer last read and what it said, so that a resent conversation is not read again."""

    attribute: str
    question: str
    asked_at: datetime = Field(default_factory=now)
    answer: str | None = None
    value: str | None = None
    """What `answer` says of the attribute; None for an answer that declined."""


@dataclass
class Recall:
    """What one turn reads: the profile and the facts and edit preferences nearest the query."""

    profile: Profile = field(default_factory=Profile)
    facts: list[tuple[Fact, float]] = field(default_factory=list)
    edits: list[tuple[EditPreference, float]] = field(default_factory=list)


class PersonaStore:
    """Persona access on a LangGraph store; all methods are async and safe to call concurrently.

    `embeddings` is needed only when the store has no vector index (ranking in Python).
    """

    def __init__(self, store: BaseStore, embeddings: Embeddings | None = None) -> None:
        self.store = store
        self.native = bool(getattr(store, "index_config", None))
        if not self.native and embeddings is None:
            raise ValueError("a store without a vector index needs `embeddings` to rank facts")
        self.embeddings = embeddings

    @classmethod
    def on(cls, store: BaseStore, config: RefinerConfig) -> PersonaStore:
        """Personas on `store` (e.g. a graph node's `runtime.store`), with the config's
        embeddings when the store has no vector index of its own."""
        return cls(store, embeddings_for(store, config))

    @staticmethod
    def namespace(user_id: str, part: str) -> tuple[str, ...]:
        return (*user_namespace(user_id), part)

    # ── profile ─────────────────────────────────────────────────────────────────────────

    async def get_profile(self, user_id: str) -> Profile:
        items = await self.store.asearch(self.namespace(user_id, PROFILE), limit=100)
        return _profile_from(items)

    async def set_attribute(
        self, user_id: str, name: str, value: str, source: FactSource = "stated"
    ) -> Attribute:
        """Set one PENGUIN attribute (e.g. "Emotional State") of the user's profile."""
        attribute = _attribute(name, value, source)
        await self.write(user_id, profile={name: attribute.model_dump(mode="json")})
        return attribute

    async def set_style(self, user_id: str, style: Style) -> None:
        await self.write(user_id, profile=style_item(style))

    async def set_name(self, user_id: str, name: str) -> None:
        await self.write(user_id, profile={NAME_KEY: {"value": name}})

    # ── facts ───────────────────────────────────────────────────────────────────────────

    async def facts(self, user_id: str, *, active_only: bool = False) -> list[Fact]:
        """Every fact (superseded ones too, unless `active_only`), oldest first."""
        items = await self._all(self.namespace(user_id, FACTS), ACTIVE if active_only else None)
        return sorted((Fact.model_validate(i.value) for i in items), key=lambda f: f.created_at)

    async def search_facts(self, user_id: str, query: str, k: int) -> list[tuple[Fact, float]]:
        """The k active facts nearest the query, with their cosine similarity."""
        return (await self.recall(user_id, query, k_facts=k, k_edits=0)).facts

    async def put_facts(self, user_id: str, facts: Sequence[Fact]) -> None:
        await self.write(user_id, facts=facts)

    async def add_fact(
        self, user_id: str, text: str, source: FactSource = "stated", confidence: float = 1.0
    ) -> Fact:
        fact = Fact(text=text, source=source, confidence=confidence)
        await self.put_facts(user_id, [fact])
        return fact

    # ── edits (CIPHER) ──────────────────────────────────────────────────────────────────

    async def add_edit(self, user_id: str, edit: EditPreference) -> None:
        await self.write(user_id, edits=[edit])

    async def edits(self, user_id: str) -> list[EditPreference]:
        items = await self._all(self.namespace(user_id, EDITS))
        edits = (EditPreference.model_validate(i.value) for i in items)
        return sorted(edits, key=lambda e: e.created_at)

    async def search_edits(
        self, user_id: str, context: str, k: int
    ) -> list[tuple[EditPreference, float]]:
        """The preferences of the k past edits whose context is nearest this one."""
        return (await self.recall(user_id, context, k_facts=0, k_edits=k)).edits

    # ── threads ─────────────────────────────────────────────────────────────────────────

    async def remember_thread(self, user_id: str, thread_id: str) -> None:
        value = {"thread_id": thread_id, "last_used": now().isoformat()}
        await self.store.aput(self.namespace(user_id, THREADS), thread_id, value, index=False)

    async def threads(self, user_id: str) -> list[str]:
        return [i.value["thread_id"] for i in await self._all(self.namespace(user_id, THREADS))]

    # ── questions the safety agent asked outside a thread ───────────────────────────────

    async def record_question(self, user_id: str, attribute: str, question: str) -> None:
        """Keep a question the safety agent asked, so that a later turn recognises it in the
        conversation; one of the same text replaces it (and its reading)."""
        await self.write(user_id, questions=[AskedQuestion(attribute=attribute, question=question)])

    async def asked_questions(self, user_id: str, texts: Sequence[str]) -> dict[str, AskedQuestion]:
        """The recorded questions among `texts`, by `question_key`: one batch of reads."""
        namespace = self.namespace(user_id, QUESTIONS)
        keys = list(dict.fromkeys(question_key(text) for text in texts))
        items = (
            await _read_batch(self.store, [GetOp(namespace, key) for key in keys]) if keys else []
        )
        return {i.key: AskedQuestion.model_validate(i.value) for i in items if i is not None}

    async def answer_question(self, user_id: str, asked: AskedQuestion) -> None:
        """Keep how an answer was read, and the attribute it gave in the profile, in one batch."""
        profile: dict[str, dict[str, Any]] = {}
        if asked.value is not None:
            attribute = _attribute(asked.attribute, asked.value, "stated")
            profile[asked.attribute] = attribute.model_dump(mode="json")
        await self.write(user_id, profile=profile, questions=[asked])

    # ── one turn's read, and forgetting ─────────────────────────────────────────────────

    async def recall(self, user_id: str, query: str, *, k_facts: int, k_edits: int) -> Recall:
        """Profile, the k nearest active facts and the k nearest edit contexts: one embedding
        of the query, and one batch of reads where the store ranks natively."""
        facts_ns, edits_ns = self.namespace(user_id, FACTS), self.namespace(user_id, EDITS)
        facts: list[tuple[Item, float]]
        edits: list[tuple[Item, float]]
        if self.native:
            profile_items, fact_hits, edit_hits = await _search_batch(
                self.store,
                [
                    SearchOp(self.namespace(user_id, PROFILE), None, 100, 0, None),
                    SearchOp(facts_ns, ACTIVE, k_facts, 0, query),
                    SearchOp(edits_ns, None, k_edits, 0, query),
                ],
            )
            profile = _profile_from(profile_items)
            facts = [(item, item.score or 0.0) for item in fact_hits]
            edits = [(item, item.score or 0.0) for item in edit_hits]
        else:
            assert self.embeddings is not None
            # The query is embedded (in a thread) while the store is read.
            vector, profile, fact_vectors, edit_vectors = await asyncio.gather(
                self.embeddings.aembed_query(query),
                self.get_profile(user_id),
                self._vectors(facts_ns) if k_facts else _no_vectors(),
                self._vectors(edits_ns) if k_edits else _no_vectors(),
            )
            query_vector = np.asarray(vector, dtype=np.float32)
            facts, edits = await asyncio.gather(
                self._nearest(facts_ns, fact_vectors, query_vector, k_facts, active_only=True),
                self._nearest(edits_ns, edit_vectors, query_vector, k_edits),
            )
        return Recall(
            profile=profile,
            facts=[(Fact.model_validate(i.value), score) for i, score in facts],
            edits=[(EditPreference.model_validate(i.value), score) for i, score in edits],
        )

    async def forget(self, user_id: str) -> dict[str, int]:
        """Delete everything stored for the user; returns how many items of each kind."""
        prefix = user_namespace(user_id)
        namespaces: list[tuple[str, ...]] = []
        while True:
            page = await self.store.alist_namespaces(
                prefix=prefix, limit=PAGE, offset=len(namespaces)
            )
            namespaces.extend(page)
            if len(page) < PAGE:
                break
        counts: dict[str, int] = {}
        for namespace in namespaces:
            items = await self._all(namespace)
            if items:
                await self.store.abatch([PutOp(namespace, i.key, None) for i in items])
            if namespace[-1] != VERSIONS:
                counts[namespace[-1]] = counts.get(namespace[-1], 0) + len(items)
        if (cache := _vector_caches.get(self.store)) is not None:
            for namespace in [ns for ns in cache if ns[: len(prefix)] == prefix]:
                del cache[namespace]
        return counts

    # ── helpers ─────────────────────────────────────────────────────────────────────────

    async def _all(self, namespace: tuple[str, ...], filter: dict | None = None) -> list[Item]:
        items: list[Item] = []
        while True:
            page = await self.store.asearch(namespace, filter=filter, limit=PAGE, offset=len(items))
            items.extend(page)
            if len(page) < PAGE:
                return items

    async def _vectors(self, namespace: tuple[str, ...]) -> _Vectors:
        """For ranking in Python: the namespace's keys, statuses and vectors.

        They are cached per store, tagged with the version item that every `write` changes in
        the same batch; a cached copy is used only while the stored version is the same (writes
        of other processes included).
        """
        tag = await self.store.aget((*namespace[:-1], VERSIONS), namespace[-1])
        version = tag.value["version"] if tag else None
        cache = _vector_caches.setdefault(self.store, OrderedDict())
        vectors = cache.get(namespace)
        if vectors is None or version is None or vectors.version != version:
            vectors = _Vectors.of(version, await self._all(namespace))
            if version is None:
                return vectors
            cache[namespace] = vectors
        cache.move_to_end(namespace)
        while len(cache) > CACHED_NAMESPACES:
            cache.popitem(last=False)
        return vectors

    async def _nearest(
        self,
        namespace: tuple[str, ...],
        vectors: _Vectors,
        query: np.ndarray,
        k: int,
        *,
        active_only: bool = False,
    ) -> list[tuple[Item, float]]:
        """The k items nearest the query; only these are read from the store."""
        best = vectors.nearest(query, k, active_only) if k > 0 else []
        items = await _read_batch(self.store, [GetOp(namespace, key) for key, _ in best])
        return [
            (_without_vector(item), score)
            for item, (_, score) in zip(items, best, strict=True)
            if item is not None
        ]

    async def write(
        self,
        user_id: str,
        *,
        facts: Sequence[Fact] = (),
        edits: Sequence[EditPreference] = (),
        profile: dict[str, dict[str, Any]] | None = None,
        questions: Sequence[AskedQuestion] = (),
    ) -> None:
        """Write facts, edit preferences, profile items (key → value) and asked questions in one
        batch, which every store applies atomically: readers see all of it or none of it."""
        indexed = [
            *(
                (self.namespace(user_id, FACTS), f.id, f.model_dump(mode="json"), "text")
                for f in facts
            ),
            *(
                (self.namespace(user_id, EDITS), e.id, e.model_dump(mode="json"), "context")
                for e in edits
            ),
        ]
        ops = [
            PutOp(self.namespace(user_id, PROFILE), key, value, index=False)
            for key, value in (profile or {}).items()
        ]
        ops += [
            PutOp(
                self.namespace(user_id, QUESTIONS),
                question_key(q.question),
                q.model_dump(mode="json"),
                index=False,
            )
            for q in questions
        ]
        if self.native:
            ops += [PutOp(ns, key, value, index=[field]) for ns, key, value, field in indexed]
        elif indexed:
            assert self.embeddings is not None
            vectors = await self.embeddings.aembed_documents([v[f] for _, _, v, f in indexed])
            ops += [
                PutOp(ns, key, {**value, VECTOR: _pack(vector)}, index=False)
                for (ns, key, value, _), vector in zip(indexed, vectors, strict=True)
            ]
            # A new version for each namespace written: cached vectors of it are now stale.
            versions = self.namespace(user_id, VERSIONS)
            for part in {ns[-1] for ns, *_ in indexed}:
                ops.append(PutOp(versions, part, {"version": new_id()}, index=False))
        if ops:
            await self.store.abatch(ops)


_vector_caches: weakref.WeakKeyDictionary[BaseStore, OrderedDict[tuple[str, ...], _Vectors]] = (
    weakref.WeakKeyDictionary()
)


def style_item(style: Style) -> dict[str, dict[str, Any]]:
    return {STYLE_KEY: {**style.model_dump(mode="json"), "updated_at": now().isoformat()}}


def _attribute(name: str, value: str, source: FactSource) -> Attribute:
    if name not in PENGUIN_ATTRIBUTES:
        raise ValueError(f"unknown attribute {name!r}; one of {list(PENGUIN_ATTRIBUTES)}")
    return Attribute(value=value, source=source)


async def _read_batch(store: BaseStore, ops: Sequence[GetOp]) -> list[Item | None]:
    """One batch of reads: each op's item, None where the key is not stored."""
    results = await store.abatch(ops)
    items: list[Item | None] = []
    for result in results:
        assert result is None or isinstance(result, Item), "a GetOp is answered with one item"
        items.append(result)
    return items


async def _search_batch(store: BaseStore, ops: Sequence[SearchOp]) -> list[list[SearchItem]]:
    """One batch of searches: each op's items, best first."""
    results = await store.abatch(ops)
    pages: list[list[SearchItem]] = []
    for result in results:
        assert _is_search_page(result), "a SearchOp is answered with a list of SearchItems"
        pages.append(result)
    return pages


def _is_search_page(result: Result) -> TypeGuard[list[SearchItem]]:
    return isinstance(result, list) and all(isinstance(item, SearchItem) for item in result)


def _profile_from(items: Sequence[Item]) -> Profile:
    profile = Profile()
    for item in items:
        if item.key == NAME_KEY:
            profile.name = item.value.get("value")
        elif item.key == STYLE_KEY:
            profile.style = Style.model_validate(
                {k: v for k, v in item.value.items() if k != "updated_at"}
            )
        elif is_penguin_attribute(item.key):
            profile.attributes[item.key] = Attribute.model_validate(item.value)
        else:
            continue
        if profile.updated_at is None or item.updated_at > profile.updated_at:
            profile.updated_at = item.updated_at
    return profile


def _pack(vector: Sequence[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float16).tobytes()).decode("ascii")


@dataclass
class _Vectors:
    """One namespace's item keys, statuses and unit vectors, as of one version."""

    version: str | None
    keys: list[str]
    active: np.ndarray
    matrix: np.ndarray

    @classmethod
    def of(cls, version: str | None, items: Sequence[Item]) -> _Vectors:
        decoded = [
            (item.key, item.value.get("status", "active") == "active", _unpack(packed))
            for item in items
            if (packed := item.value.get(VECTOR))
        ]
        if decoded:  # vectors of another embedding model (another length) are left out
            dims = decoded[-1][2].shape
            decoded = [row for row in decoded if row[2].shape == dims]
        matrix = np.stack([v for *_, v in decoded]) if decoded else np.zeros((0, 0), np.float32)
        if len(matrix):
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.where(norms == 0, 1.0, norms)
        return cls(version, [k for k, *_ in decoded], np.array([a for _, a, _ in decoded]), matrix)

    def nearest(self, query: np.ndarray, k: int, active_only: bool) -> list[tuple[str, float]]:
        if not self.keys or self.matrix.shape[1] != query.shape[0]:
            return []
        scores = self.matrix @ (query / (np.linalg.norm(query) or 1.0))
        if active_only:
            scores = np.where(self.active, scores, -np.inf)
        best = [i for i in np.argsort(-scores)[:k] if np.isfinite(scores[i])]
        return [(self.keys[i], float(scores[i])) for i in best]


async def _no_vectors() -> _Vectors:
    return _Vectors.of(None, [])


def _unpack(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype=np.float16).astype(np.float32)


def _without_vector(item: Item) -> Item:
    item.value = {k: v for k, v in item.value.items() if k != VECTOR}
    return item


def embeddings_for(store: BaseStore, config: RefinerConfig) -> Embeddings | None:
    """The embeddings a PersonaStore on `store` needs: none when the store embeds itself."""
    if getattr(store, "index_config", None):
        return None
    from redraft.embeddings import DeferredEmbeddings

    return DeferredEmbeddings(config)


async def open_store(config: RefinerConfig, stack: contextlib.AsyncExitStack) -> BaseStore:
    """The persona store the config selects; it follows the thread storage (`checkpointer`).

    memory: InMemoryStore; sqlite: `memory.sqlite` under `home`, vectors by sqlite-vec when
    Python's sqlite3 can load it, else kept in the items and ranked in Python; postgres:
    `database_url`, vectors kept in the items and ranked in Python (no pgvector assumed).
    Closed with `stack`.
    """
    kind = config.checkpointer_kind
    if kind == "postgres":
        from langgraph.store.postgres.aio import AsyncPostgresStore

        from redraft.personas.bounded import BoundedStore

        if not config.database_url:
            raise ValueError("the postgres persona store needs REDRAFT_DATABASE_URL")
        # A database that is down fails the opening in seconds (the turn then has no memory).
        store = AsyncPostgresStore(await postgres_pool(config.database_url, stack))
        await store.setup()
        return BoundedStore(store, config.store_timeout_s, outage_of(config.database_url))
    from redraft.embeddings import DeferredEmbeddings

    # `dims` is left out: neither of these stores reads it (only pgvector's does). The model is
    # needed only by what embeds, so the store opens (and forgets) without it.
    index: Any = {"embed": DeferredEmbeddings(config), "fields": ["text"]}
    if kind == "memory":
        from langgraph.store.memory import InMemoryStore

        return InMemoryStore(index=index)
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    conn = await sqlite_connection(config.memory_path, stack, isolation_level=None)
    # Deleting an item then deletes its vectors too, and forgotten text is overwritten on disk.
    await conn.execute("PRAGMA foreign_keys = ON")
    await secure_delete(conn)
    plain = AsyncSqliteStore(conn)
    await plain.setup()
    # A file keeps the vector layout it was created with, whichever Python opens it later.
    marker = await plain.aget(META, VECTORS_KEY)
    mode = marker.value["mode"] if marker else SQLITE_VEC if sqlite_loads_extensions() else ITEMS
    if mode == SQLITE_VEC and not sqlite_loads_extensions():
        raise RuntimeError(
            f"{config.memory_path} keeps its vectors with sqlite-vec, but this Python's sqlite3 "
            "cannot load extensions; open it with a Python that can (e.g. Debian's python3)"
        )
    if marker is None:
        await plain.aput(META, VECTORS_KEY, {"mode": mode}, index=False)
    if mode == ITEMS:
        return plain
    native = AsyncSqliteStore(conn, index=index)
    await native.setup()
    return native


def sqlite_loads_extensions() -> bool:
    """sqlite-vec is an extension; some Python builds (e.g. pyenv's default) cannot load one."""
    import sqlite3

    return hasattr(sqlite3.Connection, "enable_load_extension")
