"""The local knowledge base: text, Markdown and PDF files as chunks, searched by hybrid retrieval.

Each chunk is stored with its embedding and in a lexical index; a search ranks the chunks both
ways and fuses the two rankings by reciprocal rank fusion, so exact names and numbers (lexical)
and paraphrases (embeddings) are both found. Storage is a SQLite file under `REDRAFT_HOME`
(FTS5, built into SQLite, for the lexical side), or PostgreSQL (its full-text search) when
`REDRAFT_DATABASE_URL` is set. Embeddings are plain columns ranked in Python, so neither
storage needs a vector extension.

A corrupt SQLite index is detected (`CorruptIndexError`); `redraft kb add` moves it aside and
starts a new one, a turn that meets it degrades instead of failing.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
from langchain_core.embeddings import Embeddings

from redraft.db import is_postgres, postgres_connection
from redraft.errors import RedraftError
from redraft.parsing import printable

if TYPE_CHECKING:
    import psycopg

    from redraft.config import RefinerConfig

T = TypeVar("T")

SearchMode = Literal["hybrid", "vector", "lexical"]

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
PDF_SUFFIX = ".pdf"
MAX_FILE_BYTES = 20_000_000
# all-MiniLM-L6-v2 reads 256 word pieces, about 1000 characters of English.
MAX_CHUNK_CHARS = 900
# Each ranking contributes this many candidates to the fusion.
CANDIDATES = 50
# Reciprocal rank fusion constant (Cormack, Clarke and Büttcher, SIGIR 2009).
RRF_K = 60
SCHEMA_VERSION = "1"


class KnowledgeBaseError(RedraftError, RuntimeError):
    """The knowledge base cannot be used: missing, unreadable, or built with other embeddings."""


class CorruptIndexError(KnowledgeBaseError):
    """The index file is damaged or is not a SQLite database."""


class SkippedFile(Exception):
    """A file that is not indexed, and why (empty, binary, unreadable)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk of a source file and its score (higher is better)."""

    source: str
    chunk: int
    text: str
    score: float


@dataclass
class AddReport:
    """What `KnowledgeBase.add` did, file by file."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0


# ── reading and chunking files ──────────────────────────────────────────────────────────


def collect_files(paths: Iterable[str | Path]) -> list[tuple[Path, str | None]]:
    """The files to index, each with why it is skipped (None: it is indexed): named files, and
    folders searched for text, Markdown and PDF files (hidden folders skipped). A file is only
    read where it really is inside the folder it was found in: a link out of the folder (to
    `/etc/passwd`, say), or a named file that is a link, is skipped, so `kb add DIR` never
    serves another file to every tenant's prompts. A path that does not exist raises
    FileNotFoundError."""
    found: dict[Path, str | None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            root = path.resolve()
            for candidate in sorted(path.rglob("*")):
                if not (
                    candidate.is_file()
                    and candidate.suffix.lower() in TEXT_SUFFIXES | {PDF_SUFFIX}
                    and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
                ):
                    continue
                real = candidate.resolve()
                if real.is_relative_to(root):
                    found.setdefault(real, None)
                else:
                    found.setdefault(candidate.absolute(), f"a link out of {raw} (to {real})")
        elif path.is_file():
            if path.is_symlink():
                found.setdefault(
                    path.absolute(), f"a link (to {path.resolve()}): name the file itself"
                )
            else:
                found.setdefault(path.resolve(), None)
        else:
            raise FileNotFoundError(f"no such file or folder: {printable(str(raw))}")
    return list(found.items())


def read_document(path: Path) -> str:
    """The text of a file; raises SkippedFile for empty, binary or unreadable files."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SkippedFile(f"larger than {MAX_FILE_BYTES // 1_000_000} MB")
        text = _read_pdf(path) if path.suffix.lower() == PDF_SUFFIX else _read_text(path)
    except OSError as exc:
        raise SkippedFile(f"cannot be read: {exc.strerror or exc}") from exc
    if not text.strip():
        raise SkippedFile("empty (no text)")
    return text


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise SkippedFile("binary")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkippedFile("binary or not UTF-8 text") from exc


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:
        raise SkippedFile("PDF support needs pypdf: pip install 'redraft[pdf]'") from exc
    try:
        reader = PdfReader(path)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError) as exc:
        raise SkippedFile(f"not a readable PDF ({type(exc).__name__}: {exc})") from exc


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def chunk_text(text: str, *, markdown: bool, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Split a document into chunks of whole paragraphs (sentences when a paragraph is long).

    Markdown is split at headings first, and each chunk starts with its heading trail
    ("Guide › Install") so that it keeps its context when retrieved alone.
    """
    chunks: list[str] = []
    for trail, body in _sections(text) if markdown else [("", text)]:
        budget = max_chars - len(trail)
        for piece in _pack(_pieces(body, budget), budget):
            chunks.append(f"{trail}\n{piece}" if trail else piece)
    return chunks


def _sections(text: str) -> list[tuple[str, str]]:
    """Markdown as (heading trail, body) pairs, in order."""
    headings: list[tuple[int, str]] = []
    sections: list[tuple[str, str]] = []
    body: list[str] = []

    def close() -> None:
        if "".join(body).strip():
            sections.append((" › ".join(title for _, title in headings), "\n".join(body)))
        body.clear()

    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            close()
            level = len(match.group(1))
            headings[:] = [(lvl, t) for lvl, t in headings if lvl < level]
            headings.append((level, match.group(2)))
        else:
            body.append(line)
    close()
    return sections


def _pieces(body: str, budget: int) -> list[str]:
    """Paragraphs, with paragraphs longer than the budget split into sentences (or words)."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= budget:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > budget:
                cut = sentence.rfind(" ", 0, budget)
                cut = cut if cut > 0 else budget
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    return pieces


def _pack(pieces: list[str], budget: int) -> list[str]:
    packed: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > budget:
            packed.append(current)
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current:
        packed.append(current)
    return packed


def query_terms(query: str) -> list[str]:
    """Words of a query for the lexical index (letters and digits only, so always valid)."""
    return list(dict.fromkeys(re.findall(r"[^\W_]+", query.lower())))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple]:
    """Fuse rankings of ids: each id scores the sum of 1 / (k + rank) over the rankings."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)


# ── storage ─────────────────────────────────────────────────────────────────────────────


class Store(Protocol):
    """Where chunks live. Ids are integers; vectors are unit-length float32."""

    location: str

    def exists(self) -> bool: ...
    def setup(self, embeddings: str, dimensions: int) -> None: ...
    def meta(self) -> dict[str, str]: ...
    def digest(self, source: str) -> str | None: ...
    def replace(self, source: str, digest: str, chunks: list[str], vectors: np.ndarray) -> None: ...
    def generation(self) -> int: ...
    def vectors(self) -> tuple[np.ndarray, np.ndarray]: ...
    def lexical(self, terms: list[str], limit: int) -> list[tuple[int, float]]: ...
    def fetch(self, ids: Sequence[int]) -> dict[int, tuple[str, int, str]]: ...
    def counts(self) -> tuple[int, int]: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


class SqliteStore:
    """One SQLite file: chunks with their vectors, and an FTS5 index of their text."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS sources (
        path TEXT PRIMARY KEY, digest TEXT NOT NULL, added_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY, source TEXT NOT NULL, idx INTEGER NOT NULL,
        text TEXT NOT NULL, embedding BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS chunks_source ON chunks (source);
    CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts
        USING fts5 (text, tokenize = 'porter unicode61 remove_diacritics 2');
    """

    def __init__(self, path: Path):
        self.path = path
        self.location = str(path)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a transaction; SQLite errors become knowledge-base errors."""
        try:
            with closing(self._connect()) as db, db:
                return work(db)
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                raise self._corrupt(str(exc)) from exc
            raise KnowledgeBaseError(f"knowledge base {self.path}: {exc}") from exc

    def _corrupt(self, detail: str) -> CorruptIndexError:
        return CorruptIndexError(
            f"the knowledge base index {self.path} is corrupt ({detail}); "
            "`redraft kb add <files>` moves it aside and builds a new one"
        )

    def exists(self) -> bool:
        return self.path.is_file()

    def setup(self, embeddings: str, dimensions: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def work(db: sqlite3.Connection) -> None:
            db.executescript(self.SCHEMA)
            for key, value in (
                ("schema", SCHEMA_VERSION),
                ("embeddings", embeddings),
                ("dimensions", str(dimensions)),
                ("generation", "0"),
            ):
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))

        self._run(work)

    def meta(self) -> dict[str, str]:
        return dict(self._run(lambda db: db.execute("SELECT key, value FROM meta").fetchall()))

    def digest(self, source: str) -> str | None:
        row = self._run(
            lambda db: db.execute("SELECT digest FROM sources WHERE path = ?", (source,)).fetchone()
        )
        return row[0] if row else None

    def replace(self, source: str, digest: str, chunks: list[str], vectors: np.ndarray) -> None:
        def work(db: sqlite3.Connection) -> None:
            old = [r[0] for r in db.execute("SELECT id FROM chunks WHERE source = ?", (source,))]
            db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in old])
            db.execute("DELETE FROM chunks WHERE source = ?", (source,))
            for index, (text, vector) in enumerate(zip(chunks, vectors, strict=True)):
                cursor = db.execute(
                    "INSERT INTO chunks (source, idx, text, embedding) VALUES (?, ?, ?, ?)",
                    (source, index, text, vector.astype(np.float32).tobytes()),
                )
                db.execute(
                    "INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", (cursor.lastrowid, text)
                )
            db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?)", (source, digest, _now()))
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )

        self._run(work)

    def generation(self) -> int:
        row = self._run(
            lambda db: db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        )
        return int(row[0]) if row else 0

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self._run(lambda db: db.execute("SELECT id, embedding FROM chunks").fetchall())
        return _matrix(rows)

    def lexical(self, terms: list[str], limit: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        rows = self._run(
            lambda db: db.execute(
                "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY bm25(chunks_fts) LIMIT ?",
                (match, limit),
            ).fetchall()
        )
        return [(row[0], -row[1]) for row in rows]  # bm25() is lower for better matches

    def fetch(self, ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        marks = ",".join("?" * len(ids))
        rows = self._run(
            lambda db: db.execute(
                f"SELECT id, source, idx, text FROM chunks WHERE id IN ({marks})", list(ids)
            ).fetchall()
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def counts(self) -> tuple[int, int]:
        return self._run(
            lambda db: db.execute(
                "SELECT (SELECT count(*) FROM sources), (SELECT count(*) FROM chunks)"
            ).fetchone()
        )

    def probe(self) -> None:
        """Read the whole file (SQLite's quick_check, FTS5's integrity check); raises
        CorruptIndexError when any of it is damaged."""

        def work(db: sqlite3.Connection) -> None:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise self._corrupt("; ".join(problems[:3]))
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone():
                db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")

        self._run(work)

    def move_aside(self) -> Path:
        """Rename a corrupt index out of the way (nothing is deleted); returns its new path."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self.path.rename(target)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return target


class PostgresStore:
    """The same tables in PostgreSQL; the lexical side is its full-text search (GIN index)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS redraft_kb_meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE IF NOT EXISTS redraft_kb_sources (
        path text PRIMARY KEY, digest text NOT NULL, added_at text NOT NULL);
    CREATE TABLE IF NOT EXISTS redraft_kb_chunks (
        id bigserial PRIMARY KEY, source text NOT NULL, idx integer NOT NULL,
        text text NOT NULL, embedding bytea NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);
    CREATE INDEX IF NOT EXISTS redraft_kb_chunks_source ON redraft_kb_chunks (source);
    CREATE INDEX IF NOT EXISTS redraft_kb_chunks_tsv ON redraft_kb_chunks USING gin (tsv);
    """

    def __init__(self, url: str):
        self.url = url
        # Names the database in messages (and keys caches), without its password.
        self.location = "PostgreSQL " + re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", url)

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        import psycopg

        try:
            with postgres_connection(self.url) as db:
                return work(db)
        except psycopg.Error as exc:
            raise KnowledgeBaseError(f"knowledge base in PostgreSQL: {exc}") from exc

    def exists(self) -> bool:
        row = self._run(
            lambda db: db.execute("SELECT to_regclass('redraft_kb_chunks') IS NOT NULL").fetchone()
        )
        assert row is not None  # a SELECT without FROM returns one row
        return bool(row[0])

    def setup(self, embeddings: str, dimensions: int) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            # Concurrent first-time setups serialise on this lock instead of racing DDL.
            db.execute("SELECT pg_advisory_xact_lock(hashtext('redraft_kb_setup'))")
            db.execute(self.SCHEMA)
            for key, value in (
                ("schema", SCHEMA_VERSION),
                ("embeddings", embeddings),
                ("dimensions", str(dimensions)),
                ("generation", "0"),
            ):
                db.execute(
                    "INSERT INTO redraft_kb_meta VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (key, value),
                )

        self._run(work)

    def meta(self) -> dict[str, str]:
        return dict(
            self._run(lambda db: db.execute("SELECT key, value FROM redraft_kb_meta").fetchall())
        )

    def digest(self, source: str) -> str | None:
        row = self._run(
            lambda db: db.execute(
                "SELECT digest FROM redraft_kb_sources WHERE path = %s", (source,)
            ).fetchone()
        )
        return row[0] if row else None

    def replace(self, source: str, digest: str, chunks: list[str], vectors: np.ndarray) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            db.execute("DELETE FROM redraft_kb_chunks WHERE source = %s", (source,))
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO redraft_kb_chunks (source, idx, text, embedding) "
                    "VALUES (%s, %s, %s, %s)",
                    [
                        (source, i, text, vector.astype(np.float32).tobytes())
                        for i, (text, vector) in enumerate(zip(chunks, vectors, strict=True))
                    ],
                )
            db.execute(
                "INSERT INTO redraft_kb_sources VALUES (%s, %s, %s) ON CONFLICT (path) "
                "DO UPDATE SET digest = excluded.digest, added_at = excluded.added_at",
                (source, digest, _now()),
            )
            db.execute(
                "UPDATE redraft_kb_meta SET value = (value::bigint + 1)::text "
                "WHERE key = 'generation'"
            )

        self._run(work)

    def generation(self) -> int:
        row = self._run(
            lambda db: db.execute(
                "SELECT value FROM redraft_kb_meta WHERE key = 'generation'"
            ).fetchone()
        )
        return int(row[0]) if row else 0

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self._run(
            lambda db: db.execute("SELECT id, embedding FROM redraft_kb_chunks").fetchall()
        )
        return _matrix(rows)

    def lexical(self, terms: list[str], limit: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        rows = self._run(
            lambda db: db.execute(
                "SELECT id, ts_rank_cd(tsv, q, 1) FROM redraft_kb_chunks, "
                "to_tsquery('english', %s) AS q WHERE tsv @@ q "
                "ORDER BY ts_rank_cd(tsv, q, 1) DESC, id LIMIT %s",
                (" | ".join(terms), limit),
            ).fetchall()
        )
        return [(row[0], float(row[1])) for row in rows]

    def fetch(self, ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT id, source, idx, text FROM redraft_kb_chunks WHERE id = ANY(%s)",
                (list(ids),),
            ).fetchall()
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def counts(self) -> tuple[int, int]:
        row = self._run(
            lambda db: db.execute(
                "SELECT (SELECT count(*) FROM redraft_kb_sources), "
                "(SELECT count(*) FROM redraft_kb_chunks)"
            ).fetchone()
        )
        assert row is not None  # a SELECT without FROM returns one row
        return row[0], row[1]


def _matrix(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.vstack([np.frombuffer(bytes(row[1]), dtype=np.float32) for row in rows])


# ── the knowledge base ──────────────────────────────────────────────────────────────────


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


class KnowledgeBase:
    """Hybrid search over indexed files. Thread-safe; cheap to search from many turns at once.

    The embedding matrix is cached in memory and reloaded when the index changes (its
    generation counter moves), so a running server sees files added by `redraft kb add`.
    """

    def __init__(self, store: Store, embeddings: Embeddings, embeddings_name: str):
        self.store = store
        self.embeddings = embeddings
        self.embeddings_name = embeddings_name
        self._lock = threading.Lock()
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_config(cls, config: RefinerConfig) -> KnowledgeBase:
        """The knowledge base the config points at (PostgreSQL when database_url is set)."""
        from redraft.embeddings import get_embeddings

        return cls(store_for(config), get_embeddings(config), config.embeddings)

    def exists(self) -> bool:
        return self.store.exists()

    def check(self) -> None:
        """Raise a clear error when the index cannot be searched with these embeddings."""
        if not self.store.exists():
            raise KnowledgeBaseError(
                f"no knowledge base at {self.store.location}: add files with `redraft kb add`"
            )
        meta = self.store.meta()
        if meta.get("schema") != SCHEMA_VERSION:
            raise KnowledgeBaseError(
                f"{self.store.location} is not a redraft knowledge base (schema "
                f"{meta.get('schema')!r}, expected {SCHEMA_VERSION!r})"
            )
        if meta.get("embeddings") != self.embeddings_name:
            raise KnowledgeBaseError(
                f"the knowledge base at {self.store.location} was built with embeddings "
                f"{meta.get('embeddings')!r}, but the config uses {self.embeddings_name!r}; "
                "rebuild it (remove it and `redraft kb add` the files again) or set embeddings"
            )

    def add(
        self,
        paths: Iterable[str | Path],
        *,
        on_file: Callable[[str, str], None] | None = None,
    ) -> AddReport:
        """Index files and folders; a changed file replaces its old chunks, an unchanged one is
        left alone. Each file is committed on its own, so an interruption loses nothing that
        was indexed before it. `on_file(path, outcome)` reports progress."""
        files = collect_files(paths)  # a missing path fails before anything is written
        report = AddReport()
        if any(skip is None for _, skip in files):
            self._setup()
        for file, skip in files:
            source = str(file)
            try:
                if skip:
                    raise SkippedFile(skip)
                text = read_document(file)
            except SkippedFile as skipped:
                report.skipped.append((source, skipped.reason))
                if on_file:
                    on_file(source, f"skipped: {skipped.reason}")
                continue
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if self.store.digest(source) == digest:
                report.unchanged.append(source)
                if on_file:
                    on_file(source, "unchanged")
                continue
            chunks = chunk_text(text, markdown=file.suffix.lower() in MARKDOWN_SUFFIXES)
            vectors = _unit(self.embeddings.embed_documents(chunks))
            self.store.replace(source, digest, chunks, vectors)
            report.added.append(source)
            report.chunks += len(chunks)
            if on_file:
                on_file(source, f"{len(chunks)} chunks")
        return report

    def _setup(self) -> None:
        dimensions = len(self.embeddings.embed_query("dimensions"))
        self.store.setup(self.embeddings_name, dimensions)
        self.check()

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        """The k best chunks for `query`: fused (hybrid), by embedding, or lexical only."""
        rankings: list[list[int]] = []
        scores: dict[int, float] = {}
        if mode in ("hybrid", "lexical"):
            lexical = self.store.lexical(query_terms(query), CANDIDATES)
            rankings.append([i for i, _ in lexical])
            scores.update(lexical)
        if mode in ("hybrid", "vector"):
            vector = self._vector_ranking(query)
            rankings.append([i for i, _ in vector])
            scores.update(vector)
        if mode == "hybrid":
            best = reciprocal_rank_fusion(rankings)[:k]
        else:
            best = [(i, scores[i]) for i in rankings[0][:k]]
        chunks = self.store.fetch([i for i, _ in best]) if best else {}
        return [
            Hit(source=chunks[i][0], chunk=chunks[i][1], text=chunks[i][2], score=score)
            for i, score in best
            if i in chunks
        ]

    def _vector_ranking(self, query: str) -> list[tuple[int, float]]:
        ids, matrix = self._vectors()
        if not len(ids):
            return []
        similarity = matrix @ _unit([self.embeddings.embed_query(query)])[0]
        top = np.argsort(-similarity)[:CANDIDATES]
        return [(int(ids[i]), float(similarity[i])) for i in top]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        generation = self.store.generation()
        with self._lock:
            if self._cache is None or self._cache[0] != generation:
                self._cache = (generation, *self.store.vectors())
            return self._cache[1], self._cache[2]


def store_for(config: RefinerConfig) -> Store:
    if is_postgres(config.database_url):
        return PostgresStore(config.database_url)
    return SqliteStore(config.kb_path or config.home / "kb.sqlite")


def open_for_adding(config: RefinerConfig) -> tuple[KnowledgeBase, Path | None]:
    """The knowledge base to add files to. A corrupt SQLite index is moved aside (never
    deleted) and a new one started; its new name is returned so the caller can say so."""
    kb = KnowledgeBase.from_config(config)
    if not isinstance(kb.store, SqliteStore) or not kb.store.exists():
        return kb, None
    try:
        kb.store.probe()
    except CorruptIndexError:
        return kb, kb.store.move_aside()
    return kb, None
