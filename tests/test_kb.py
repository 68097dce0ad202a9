"""The local knowledge base with the real embedding model: indexing, hybrid search, bad files,
a corrupt index, the CLI, and the PostgreSQL store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from redraft.cli import main
from redraft.config import RefinerConfig
from redraft.knowledge.base import (
    CorruptIndexError,
    KnowledgeBase,
    KnowledgeBaseError,
    chunk_text,
    open_for_adding,
)

FERRY = """\
# Gull Point ferry

## Fares

A single crossing costs 7 euros; islanders pay 4 euros with their resident pass.

## Weather

Boats stay in harbour when the wind is above 40 knots or fog hides the breakwater.
"""

BAKERY = """\
Marlow Street Bakery bakes rye bread every morning from 5 o'clock.
The shop closes on Wednesdays so that the bakers can rest.
Order code RX-7731 reserves a whole rye loaf for the next day.
"""


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page text is `text` (Helvetica, no compression)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    (folder / "ferry.md").write_text(FERRY)
    (folder / "nested" / "bakery.txt").write_text(BAKERY)
    (folder / "lighthouse.pdf").write_bytes(
        minimal_pdf("The Gull Point lighthouse keeper sounds the fog horn at 0400 hours.")
    )
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not a document type
    (folder / ".git").mkdir()
    (folder / ".git" / "notes.md").write_text("hidden folders are not indexed")
    return folder


@pytest.fixture
def config(tmp_path: Path) -> RefinerConfig:
    return RefinerConfig(home=tmp_path / "home")


@pytest.fixture
def kb(config: RefinerConfig, local_embeddings) -> KnowledgeBase:
    return KnowledgeBase.from_config(config)


def names(hits) -> list[str]:
    return [Path(hit.source).name for hit in hits]


# ── chunking ─────────────────────────────────────────────────────────────────────────


def test_markdown_chunks_keep_their_heading_trail():
    chunks = chunk_text(FERRY, markdown=True)
    assert chunks[0].startswith("Gull Point ferry › Fares\n")
    assert chunks[1].startswith("Gull Point ferry › Weather\n")
    assert "40 knots" in chunks[1] and "40 knots" not in chunks[0]


def test_long_paragraphs_are_split_within_the_budget():
    paragraph = " ".join(f"Sentence number {i} says something." for i in range(80))
    chunks = chunk_text(paragraph, markdown=False, max_chars=300)
    assert len(chunks) > 5 and all(len(c) <= 300 for c in chunks)
    assert " ".join(chunks).split() == paragraph.split()  # nothing lost, nothing repeated


def test_code_fences_are_not_headings():
    text = "# Title\n\n```bash\n# a shell comment\necho hi\n```\n"
    chunks = chunk_text(text, markdown=True)
    assert chunks == ["Title\n```bash\n# a shell comment\necho hi\n```"]


# ── indexing and searching ───────────────────────────────────────────────────────────


def test_add_a_folder_and_search_names_the_source(kb: KnowledgeBase, docs: Path):
    report = kb.add([docs])
    assert sorted(Path(p).name for p in report.added) == [
        "bakery.txt",
        "ferry.md",
        "lighthouse.pdf",
    ]
    assert report.skipped == [] and report.chunks == 4
    # a paraphrase (no shared words with the passage) and an identifier both come first
    assert names(kb.search("Is the boat cancelled in a storm?", 1)) == ["ferry.md"]
    assert names(kb.search("RX-7731", 1)) == ["bakery.txt"]
    assert names(kb.search("when does the fog horn sound", 1)) == ["lighthouse.pdf"]
    hit = kb.search("rye loaf reservation", 1)[0]
    assert hit.source == str(docs / "nested" / "bakery.txt") and hit.chunk == 0
    assert "RX-7731" in hit.text


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_every_mode_finds_an_exact_match(kb: KnowledgeBase, docs: Path, mode: str):
    kb.add([docs])
    assert names(kb.search("resident pass fares for islanders", 1, mode)) == ["ferry.md"]


def test_unchanged_files_are_left_alone_and_changed_ones_replaced(kb: KnowledgeBase, docs):
    kb.add([docs])
    again = kb.add([docs])
    assert again.added == [] and len(again.unchanged) == 3
    (docs / "ferry.md").write_text("# Gull Point ferry\n\nThe ferry now costs 9 euros.\n")
    changed = kb.add([docs / "ferry.md"])
    assert [Path(p).name for p in changed.added] == ["ferry.md"]
    assert kb.store.counts() == (3, 3)  # the old ferry chunks are gone
    texts = [hit.text for hit in kb.search("ferry fare", 5)]
    assert any("9 euros" in t for t in texts) and not any("7 euros" in t for t in texts)


def test_empty_binary_and_broken_files_are_skipped_naming_them(kb: KnowledgeBase, tmp_path):
    good = tmp_path / "good.md"
    good.write_text("Kittiwakes nest on the cliffs of Gull Point from May.")
    (tmp_path / "empty.txt").write_text("  \n\n ")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    files = ["empty.txt", "blob.txt", "latin1.txt", "broken.pdf", "good.md"]
    report = kb.add([tmp_path / name for name in files])
    skipped = {Path(path).name: reason for path, reason in report.skipped}
    assert set(skipped) == {"empty.txt", "blob.txt", "latin1.txt", "broken.pdf"}
    assert "empty" in skipped["empty.txt"] and "binary" in skipped["blob.txt"]
    assert "PDF" in skipped["broken.pdf"]
    assert [Path(p).name for p in report.added] == ["good.md"]


def test_a_missing_path_fails_before_anything_is_written(kb: KnowledgeBase, docs, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        kb.add([docs, tmp_path / "nowhere"])
    assert not kb.exists()


def test_a_running_knowledge_base_sees_files_added_later(kb: KnowledgeBase, docs, config):
    kb.add([docs / "ferry.md"])
    assert names(kb.search("RX-7731", 1)) == ["ferry.md"]  # the only file so far
    KnowledgeBase.from_config(config).add([docs / "nested"])  # another process, say
    assert names(kb.search("RX-7731", 1)) == ["bakery.txt"]


def test_other_embeddings_than_the_index_was_built_with_are_reported(kb, docs, config):
    kb.add([docs])
    other = KnowledgeBase.from_config(
        RefinerConfig(home=config.home, embeddings="openai:text-embedding-3-small", api_key="k")
    )
    with pytest.raises(KnowledgeBaseError, match="built with embeddings 'local'"):
        other.check()


# ── a corrupt index ──────────────────────────────────────────────────────────────────


def test_a_garbage_index_is_reported_clearly(kb: KnowledgeBase, config):
    config.home.mkdir(parents=True)
    (config.home / "kb.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptIndexError, match=r"is corrupt.*redraft kb add"):
        kb.check()


def test_adding_to_a_damaged_index_moves_it_aside_and_rebuilds(kb: KnowledgeBase, docs, config):
    kb.add([docs])
    index = config.home / "kb.sqlite"
    with open(index, "r+b") as damaged:  # overwrite pages in the middle of the file
        damaged.seek(4096)
        damaged.write(b"\xff" * 8192)
    rebuilt, moved = open_for_adding(config)
    assert moved is not None and moved.exists() and moved.name.startswith("kb.sqlite.corrupt-")
    assert not index.exists()
    report = rebuilt.add([docs / "ferry.md"])
    assert len(report.added) == 1
    rebuilt.check()
    assert names(rebuilt.search("ferry fares", 1)) == ["ferry.md"]
    assert moved.stat().st_size > 0  # the damaged file is kept, not deleted


# ── the command line ─────────────────────────────────────────────────────────────────


def test_cli_add_and_search(docs: Path, local_embeddings, capsys, monkeypatch):
    (docs / "empty.md").write_text("")
    monkeypatch.chdir(docs.parent)
    assert main(["kb", "add", "docs"]) == 0
    out, err = capsys.readouterr()
    assert "indexed 3 file(s), 4 chunks" in out
    assert err.strip() == "redraft: warning: skipped docs/empty.md: empty (no text)"

    assert main(["kb", "search", "What does a single crossing cost?", "-k", "2"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("1. docs/ferry.md #0")

    assert main(["kb", "search", "RX-7731", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert Path(results[0]["source"]).name == "bakery.txt" and "RX-7731" in results[0]["text"]


def test_cli_bad_input_is_one_line_and_exit_2(docs: Path, capsys, tmp_path):
    assert main(["kb", "add", str(docs), str(tmp_path / "missing.md")]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == f"redraft: no such file or folder: {tmp_path / 'missing.md'}"
    assert not (tmp_path / "home" / "kb.sqlite").exists()  # nothing was indexed
    assert main(["kb", "search", "  "]) == 2
    assert "must not be empty" in capsys.readouterr().err


def test_cli_corrupt_index(docs: Path, local_embeddings, capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "kb.sqlite").write_bytes(b"garbage" * 500)
    assert main(["kb", "search", "ferry"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is corrupt" in err and "Traceback" not in err

    assert main(["kb", "add", str(docs / "ferry.md")]) == 0
    out, err = capsys.readouterr()
    assert "was corrupt: moved it to" in err and "indexed 1 file(s)" in out
    assert main(["kb", "search", "ferry", "-k", "1"]) == 0
    assert "ferry.md" in capsys.readouterr().out


def test_cli_search_without_a_knowledge_base(capsys):
    assert main(["kb", "search", "anything"]) == 1
    assert "no knowledge base at" in capsys.readouterr().err


# ── PostgreSQL ───────────────────────────────────────────────────────────────────────


@pytest.fixture
def postgres_config(database_url: str, tmp_path: Path):
    """A config whose knowledge base lives in a schema of its own, dropped afterwards."""
    schema = f"kb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options=-csearch_path%3D{schema}"
    yield RefinerConfig(home=tmp_path / "home", database_url=url)
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_store(postgres_config: RefinerConfig, docs: Path, local_embeddings):
    kb = KnowledgeBase.from_config(postgres_config)
    assert not kb.exists()
    report = kb.add([docs])
    assert len(report.added) == 3 and report.chunks == 4
    assert not (postgres_config.home / "kb.sqlite").exists()
    kb.check()
    assert names(kb.search("Is the boat cancelled in a storm?", 1)) == ["ferry.md"]
    assert names(kb.search("RX-7731", 1, "lexical")) == ["bakery.txt"]
    assert names(kb.search("when does the fog horn sound", 1, "vector")) == ["lighthouse.pdf"]
    again = KnowledgeBase.from_config(postgres_config).add([docs])
    assert again.added == [] and len(again.unchanged) == 3


# ── links out of the folder, names that are not plain text (issue 18) ────────────────


def test_links_out_of_the_folder_are_skipped_naming_them(kb: KnowledgeBase, docs, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("The vault code is 4417-SECRET.")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "also.md").write_text("Another private note: 9921-SECRET.")
    (docs / "leak.md").symlink_to(secret)
    (docs / "passwd.md").symlink_to("/etc/passwd")
    (docs / "linked").symlink_to(outside, target_is_directory=True)
    (docs / "ferry-again.md").symlink_to(docs / "ferry.md")  # inside: indexed once
    report = kb.add([docs])
    skipped = {Path(path).name: reason for path, reason in report.skipped}
    assert set(skipped) >= {"leak.md", "passwd.md"}
    assert f"a link out of {docs} (to {secret})" == skipped["leak.md"]
    assert "(to /etc/passwd)" in skipped["passwd.md"]
    assert sorted(names_of(report.added)) == ["bakery.txt", "ferry.md", "lighthouse.pdf"]
    for query in ("vault code 4417-SECRET", "private note 9921-SECRET", "root:x:0:0"):
        assert not any("SECRET" in h.text or "root:" in h.text for h in kb.search(query, 10))


def test_a_named_file_that_is_a_link_is_skipped(kb: KnowledgeBase, tmp_path):
    (tmp_path / "notes.md").symlink_to("/etc/passwd")
    report = kb.add([tmp_path / "notes.md"])
    assert report.added == [] and not kb.exists()
    [(path, reason)] = report.skipped
    assert Path(path).name == "notes.md" and reason.startswith("a link (to /etc/passwd)")


def names_of(paths) -> list[str]:
    return [Path(p).name for p in paths]


def test_cli_escapes_file_names(docs: Path, local_embeddings, capsys, monkeypatch):
    (docs / "evil\x1b[2J\nname.md").write_text("Puffins return to Gull Point in April.")
    (docs / "bad\x1b]0;title\x07.md").write_text("")
    monkeypatch.chdir(docs.parent)
    assert main(["kb", "add", "docs"]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "docs/evil\\x1b[2J\\nname.md: 1 chunks" in out.splitlines()
    assert err.strip() == "redraft: warning: skipped docs/bad\\x1b]0;title\\x07.md: empty (no text)"
