"""The persona store on each backend (in-memory, SQLite, PostgreSQL), with the real embedding
model, and the reconciliation rules of the memory agent's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from redraft.agents.memory import FactDecision, MemoryOutput
from redraft.config import RefinerConfig
from redraft.personas import store as store_module
from redraft.personas.learning import reconcile
from redraft.personas.model import PENGUIN_ATTRIBUTES, EditPreference, Fact
from redraft.personas.store import PersonaStore, embeddings_for, open_store

FACTS = [
    "The user is allergic to peanuts.",
    "The user plays chess on weekends.",
    "The user drives an old Volvo.",
    "The user works night shifts as a nurse.",
]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def personas(request, tmp_path, local_embeddings):
    kind = request.param
    url = request.getfixturevalue("database_url") if kind == "postgres" else None
    config = RefinerConfig(checkpointer=kind, home=tmp_path, database_url=url)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(config, stack)
        yield PersonaStore(store, embeddings_for(store, config))


@pytest.fixture
def uid() -> str:
    """A fresh user id (PostgreSQL keeps data between runs), with a '.' to be escaped."""
    return f"user.{uuid.uuid4().hex[:8]}"


async def test_search_ranks_facts_by_meaning(personas, uid):
    for text in FACTS:
        await personas.add_fact(uid, text)
    found = await personas.search_facts(uid, "Which snacks are safe for me to eat?", k=2)
    assert found[0][0].text == "The user is allergic to peanuts."
    assert len(found) == 2 and found[0][1] > found[1][1]


async def test_superseded_facts_are_kept_but_not_searched(personas, uid):
    old = await personas.add_fact(uid, "The user lives in Berlin.")
    new = Fact(text="The user lives in Munich.", source="stated", supersedes=old.id)
    gone = old.model_copy(update={"status": "superseded", "superseded_by": new.id})
    await personas.put_facts(uid, [gone, new])
    found = [f.text for f, _ in await personas.search_facts(uid, "Where do I live?", k=5)]
    assert found == ["The user lives in Munich."]
    assert {f.text: f.status for f in await personas.facts(uid)} == {
        "The user lives in Berlin.": "superseded",
        "The user lives in Munich.": "active",
    }


async def test_users_are_isolated_even_with_look_alike_ids(personas, uid):
    twin = uid.replace(".", "%2E")  # what a naive escaping would map `uid` to
    await personas.add_fact(uid, "The user is vegetarian.")
    await personas.add_fact(twin, "The user eats steak daily.")
    mine = [f.text for f in await personas.facts(uid)]
    assert mine == ["The user is vegetarian."]
    found = await personas.search_facts(twin, "food", k=5)
    assert [f.text for f, _ in found] == ["The user eats steak daily."]
    await personas.forget(uid)
    assert [f.text for f in await personas.facts(twin)] == ["The user eats steak daily."]
    await personas.forget(twin)


async def test_attribute_writers_never_overwrite_each_other(personas, uid):
    await asyncio.gather(
        *(personas.set_attribute(uid, name, f"value of {name}") for name in PENGUIN_ATTRIBUTES)
    )
    profile = await personas.get_profile(uid)
    assert {n: a.value for n, a in profile.attributes.items()} == {
        name: f"value of {name}" for name in PENGUIN_ATTRIBUTES
    }
    with pytest.raises(ValueError, match="unknown attribute"):
        await personas.set_attribute(uid, "Star Sign", "Leo")


async def test_edit_preferences_are_found_by_context(personas, uid):
    for context, preference in [
        ("How do I reverse a list in Python?", "Code first, then one sentence."),
        ("How much flour for pancakes?", "Quantities in grams."),
    ]:
        await personas.add_edit(uid, EditPreference(preference=preference, context=context))
    found = await personas.search_edits(uid, "How do I sort a dict in Python?", k=1)
    assert [e.preference for e, _ in found] == ["Code first, then one sentence."]


async def test_forget_deletes_every_kind_of_item(personas, uid):
    await personas.add_fact(uid, "The user is vegetarian.")
    await personas.add_edit(uid, EditPreference(preference="Be brief.", context="hi"))
    await personas.set_attribute(uid, "Age", "30")
    await personas.remember_thread(uid, "t1")
    counts = await personas.forget(uid)
    assert counts == {"facts": 1, "edits": 1, "profile": 1, "threads": 1}
    prefix = store_module.user_namespace(uid)
    assert await personas.store.asearch(prefix, limit=100) == []
    assert await personas.threads(uid) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_python_ranking_sees_what_another_process_wrote(
    request, kind, tmp_path, uid, local_embeddings
):
    """Ranked in Python, vectors are cached per process; a write elsewhere makes them stale."""
    url = request.getfixturevalue("database_url") if kind == "postgres" else None
    config = RefinerConfig(checkpointer=kind, home=tmp_path, database_url=url)
    async with contextlib.AsyncExitStack() as stack:
        first, second = [PersonaStore.on(await open_store(config, stack), config) for _ in "ab"]
        assert not first.native
        await first.add_fact(uid, "The user drives an old Volvo.")
        assert len(await first.search_facts(uid, "snacks", 5)) == 1  # now cached
        await second.add_fact(uid, "The user is allergic to peanuts.")
        found = await first.search_facts(uid, "Which snacks are safe for me?", 5)
        assert found[0][0].text == "The user is allergic to peanuts."
        await second.forget(uid)
        assert await first.search_facts(uid, "snacks", 5) == []


# ── the SQLite file's vector layout ─────────────────────────────────────────────────────


async def test_a_sqlite_file_keeps_the_vector_layout_it_was_created_with(
    tmp_path, monkeypatch, local_embeddings
):
    config = RefinerConfig(checkpointer="sqlite", home=tmp_path)
    monkeypatch.setattr(store_module, "sqlite_loads_extensions", lambda: False)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(config, stack)
        await PersonaStore(store, embeddings_for(store, config)).add_fact("u", "The user sings.")
    monkeypatch.setattr(store_module, "sqlite_loads_extensions", lambda: True)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(config, stack)  # would be sqlite-vec for a new file
        personas = PersonaStore(store, embeddings_for(store, config))
        assert not personas.native
        assert [f.text for f, _ in await personas.search_facts("u", "music", 1)] == [
            "The user sings."
        ]
        await store.aput(store_module.META, store_module.VECTORS_KEY, {"mode": "sqlite-vec"})
    monkeypatch.setattr(store_module, "sqlite_loads_extensions", lambda: False)
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(RuntimeError, match="cannot load extensions"):
            await open_store(config, stack)


@pytest.mark.skipif(
    not store_module.sqlite_loads_extensions(),
    reason="this Python's sqlite3 cannot load extensions (pyenv's default build), so sqlite-vec "
    "cannot be used; the store keeps vectors in its items instead (tested above)",
)
async def test_sqlite_vec_ranks_natively(tmp_path, local_embeddings):
    config = RefinerConfig(checkpointer="sqlite", home=tmp_path)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(config, stack)
        personas = PersonaStore(store, embeddings_for(store, config))
        assert personas.native
        for text in FACTS:
            await personas.add_fact("u", text)
        found = await personas.search_facts("u", "Which snacks are safe for me?", k=1)
        assert found[0][0].text == "The user is allergic to peanuts."


# ── reconciliation of the memory agent's decisions ──────────────────────────────────────


def decide(*decisions: dict) -> MemoryOutput:
    return MemoryOutput(facts=[FactDecision(**d) for d in decisions])


STORED = [
    Fact(text="The user has a dog.", source="stated", confidence=0.6),
    Fact(text="The user lives in Berlin.", source="stated"),
]


def test_update_rewrites_the_fact_in_place():
    result = reconcile(
        decide({"action": "update", "target": "m1", "text": "The user has a dog named Rex."}),
        STORED,
    )
    (fact,) = result.writes
    assert fact.id == STORED[0].id and fact.text == "The user has a dog named Rex."
    assert fact.created_at == STORED[0].created_at and fact.confidence == 0.8
    assert result.updated == 1


def test_supersede_keeps_the_old_fact_marked():
    result = reconcile(
        decide({"action": "supersede", "target": "m2", "text": "The user lives in Munich."}),
        STORED,
    )
    old, new = result.writes
    assert old.id == STORED[1].id and old.status == "superseded"
    assert old.superseded_by == new.id and new.supersedes == old.id
    assert old.superseded_at == new.created_at and old.text == "The user lives in Berlin."


def test_repeats_unknown_targets_and_ignores():
    result = reconcile(
        decide(
            {"action": "add", "text": "the user has a dog"},  # already stored
            {"action": "update", "target": "m9", "text": "The user runs."},  # unknown: an add
            {"action": "supersede", "target": "m2", "text": "The user lives in Rome."},
            {"action": "supersede", "target": "m2", "text": "The user lives in Oslo."},  # used
            {"action": "ignore", "text": "The user said hi."},
        ),
        STORED,
    )
    texts = [f.text for f in result.writes]
    assert texts == [
        "The user runs.",
        "The user lives in Berlin.",
        "The user lives in Rome.",
        "The user lives in Oslo.",
    ]
    assert (result.added, result.superseded, result.ignored) == (2, 1, 2)


# ── persona files that are huge, special or someone else's (issue 18) ────────────────


def persona_import(path) -> tuple[int, str, float]:
    """`redraft persona import --user ana PATH` in-process: exit code, stderr, seconds."""
    import contextlib
    import io
    import time

    from redraft.cli import main

    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err):
        code = main(["persona", "import", "--user", "ana", str(path)])
    return code, err.getvalue(), time.monotonic() - started


def test_a_60_mb_persona_file_is_refused_quickly_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("w") as file:
        file.write("facts:\n")
        line = "  - I like tea and long walks by the sea.\n"
        file.write(line * (60_000_000 // len(line)))
    code, err, seconds = persona_import(path)
    assert code == 2 and seconds < 2, (code, seconds)
    assert err == f"redraft: {path}: larger than 1000000 bytes (REDRAFT_MAX_PERSONA_FILE_BYTES)\n"


def test_the_persona_file_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.yaml"
    path.write_text("facts: [I like tea, I live in Porto]\n")
    monkeypatch.setenv("REDRAFT_MAX_PERSONA_FILE_BYTES", "10")
    code, err, _ = persona_import(path)
    assert code == 2 and "larger than 10 bytes" in err


def test_a_persona_file_linked_to_a_system_file_does_not_echo_its_lines(tmp_path):
    system = tmp_path / "shadow"
    system.write_text("".join(f"account{i}: $6$SECRETHASH{i}$abcdefgh\n" for i in range(40)))
    link = tmp_path / "persona.yaml"
    link.symlink_to(system)
    code, err, _ = persona_import(link)
    assert code == 2 and err.count("\n") == 1 and len(err) < 400
    assert "SECRETHASH" not in err
    assert sum(f"account{i}" in err for i in range(40)) <= 5 and "and 35 more" in err


def test_yaml_problems_are_quoted_short_and_escaped(tmp_path):
    path = tmp_path / "bad\x1b[2J.yaml"
    path.write_text("facts: *" + "x\x1b" * 5)
    code, err, _ = persona_import(path)
    assert code == 2 and "\x1b" not in err and "bad\\x1b[2J.yaml" in err


def test_a_fifo_or_device_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "persona.yaml"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        code, err, seconds = persona_import(path)
        assert code == 2 and seconds < 2 and err.endswith(": not a regular file\n")


def test_yaml_aliases_are_refused(tmp_path):
    path = tmp_path / "laughs.yaml"
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(
            f"{'abcdefghi'[i]}: &{'abcdefghi'[i]} ["
            + ", ".join([f"*{'abcdefghi'[i - 1]}"] * 9)
            + "]"
        )
    lines.append("facts: *i")
    path.write_text("\n".join(lines) + "\n")
    code, err, seconds = persona_import(path)
    assert code == 2 and seconds < 2 and "YAML aliases (*name) are not accepted" in err
