"""Persona memory end to end, over the real path (ChatOpenAI → HTTP → FakeProvider), with the
real embedding model: learning from turns and edits, what the critic sees, isolation, forgetting."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid

import pytest

from redraft import Refiner
from redraft.personas.store import user_namespace
from redraft.testing import Fail
from tests.conftest import PASS, user


def memory_config(http_config, **overrides):
    """Only the personalization critic, chosen without a planner call: the requests it gets are
    where persona facts show."""
    return http_config(planner="all", critics=["personalization"], **overrides)


def learns(*facts: str, style: dict | None = None) -> dict:
    return {
        "facts": [
            {"action": "add", "text": f, "source": "stated", "confidence": 0.9} for f in facts
        ],
        "style": style,
    }


def critic_prompt(call) -> str:
    return str(call.messages[1]["content"])


def persona_block(call) -> str:
    return critic_prompt(call).split("<persona>\n")[1].split("\n</persona>")[0]


def stored_id(call, text: str) -> str:
    """The id (m1, m2, ...) under which the memory agent was shown a stored fact."""
    found = re.search(r'<fact id="(m\d+)">\n' + re.escape(text), critic_prompt(call))
    assert found, f"{text!r} not among the stored facts shown"
    return found.group(1)


async def test_facts_learned_in_turn_1_reach_the_critic_in_turn_2(provider, http_config):
    provider.script("memory", learns("The user is vegetarian.", "The user lives in Berlin."))
    provider.set_default("personalization", PASS)
    async with Refiner(memory_config(http_config)) as refiner:
        first = await refiner.arefine(
            {"messages": [user("I'm vegetarian and just moved to Berlin.")], "user_id": "ada"}
        )
        await refiner.wait_for_memory()
        await refiner.arefine(
            {"messages": [user("Any ideas for dinner tonight?")], "user_id": "ada"}
        )
    turn1, turn2 = provider.calls_for("personalization")
    assert persona_block(turn1) == "(none)"
    assert '<fact id="f1">\nThe user is vegetarian.' in critic_prompt(turn2)
    # the memory agent saw the exchange, the reply included, delimited in a user message
    extraction = provider.calls_for("memory")[0]
    assert "vegetarian" not in str(extraction.messages[0]["content"])
    assert first.reply in critic_prompt(extraction)
    assert first.degraded is None


async def test_the_reply_is_out_before_memory_work_starts(provider, http_config):
    provider.script("memory", learns("The user has a dog named Rex."))
    async with Refiner(memory_config(http_config)) as refiner:
        result = await refiner.arefine({"messages": [user("My dog Rex is ill.")], "user_id": "u"})
        assert result.reply
        assert provider.calls_for("memory") == []  # not awaited by the turn
        await refiner.wait_for_memory()
        assert len(provider.calls_for("memory")) == 1
        facts = await (await refiner.personas()).facts("u")
    assert [f.text for f in facts] == ["The user has a dog named Rex."]
    assert facts[0].source == "stated" and facts[0].confidence == 0.9


async def test_a_contradicted_fact_is_superseded_not_lost(provider, http_config):
    provider.script("memory", learns("The user lives in Berlin."))

    def moved(call):
        target = stored_id(call, "The user lives in Berlin.")
        return {
            "facts": [
                {"action": "supersede", "target": target, "text": "The user lives in Munich."}
            ]
        }

    provider.script("memory", moved)
    provider.set_default("personalization", PASS)
    async with Refiner(memory_config(http_config)) as refiner:
        for text in ("I live in Berlin.", "We moved to Munich last week.", "Where can I run?"):
            await refiner.arefine({"messages": [user(text)], "user_id": "ben"})
            await refiner.wait_for_memory()
        facts = {f.text: f for f in await (await refiner.personas()).facts("ben")}
    berlin, munich = facts["The user lives in Berlin."], facts["The user lives in Munich."]
    assert berlin.status == "superseded" and berlin.superseded_by == munich.id
    assert berlin.superseded_at is not None and berlin.superseded_at >= berlin.created_at
    assert munich.status == "active" and munich.supersedes == berlin.id
    last = critic_prompt(provider.calls_for("personalization")[-1])
    assert "Munich" in last and "Berlin" not in last


async def test_memory_work_of_one_user_runs_in_order(provider, http_config):
    """A turn that comes before the previous extraction finished reads a consistent store, and
    its own extraction runs after the previous one, seeing what that one stored."""
    provider.latency_s = 0.05
    provider.script("memory", learns("The user plays the cello."), learns("The user is a nurse."))
    async with Refiner(memory_config(http_config)) as refiner:
        await refiner.arefine({"messages": [user("I play the cello.")], "user_id": "cy"})
        await refiner.arefine({"messages": [user("I work as a nurse.")], "user_id": "cy"})
        await refiner.wait_for_memory()
        facts = await (await refiner.personas()).facts("cy")
    first, second = provider.calls_for("memory")
    assert second.started >= first.ended
    assert "The user plays the cello." in critic_prompt(second)
    assert sorted(f.text for f in facts) == ["The user is a nurse.", "The user plays the cello."]


async def test_unparseable_extraction_is_dropped_and_the_turn_is_unaffected(
    provider, http_config, capsys
):
    provider.script("memory", "not json", "still not json")
    provider.script("personalization", PASS)
    async with Refiner(memory_config(http_config)) as refiner:
        result = await refiner.arefine({"messages": [user("I love jazz.")], "user_id": "di"})
        await refiner.wait_for_memory()
        facts = await (await refiner.personas()).facts("di")
    assert result.reply and result.degraded is None
    assert len(provider.calls_for("memory")) == 2  # asked again once, then dropped
    assert facts == []
    logged = capsys.readouterr().err
    assert "memory.failed" in logged and "OutputNotParsedError" in logged
    assert "jazz" not in logged  # persona text only at DEBUG


async def test_failing_provider_for_memory_never_touches_the_reply(provider, http_config):
    provider.script("memory", Fail(status=500))
    async with Refiner(memory_config(http_config)) as refiner:
        result = await refiner.arefine(
            {"messages": [user("hi")], "user_id": "ed", "draft": "Hello!"}
        )
        await refiner.wait_for_memory()
    assert result.reply == "Hello!" and result.degraded is None


async def test_requests_without_a_user_id_keep_no_memory(provider, http_config):
    async with Refiner(memory_config(http_config)) as refiner:
        await refiner.arefine({"messages": [user("I'm vegetarian.")]})
        await refiner.wait_for_memory()
    assert provider.calls_for("memory") == []


async def test_memory_off_reads_and_learns_nothing(provider, http_config):
    async with Refiner(memory_config(http_config, memory=False)) as refiner:
        await (await refiner.personas()).add_fact("fi", "The user is vegetarian.")
        await refiner.arefine({"messages": [user("Dinner ideas?")], "user_id": "fi"})
        await refiner.wait_for_memory()
    assert provider.calls_for("memory") == []
    assert "vegetarian" not in critic_prompt(provider.calls_for("personalization")[0])


async def test_the_critic_sees_the_relevant_facts_not_the_whole_persona(provider, http_config):
    config = memory_config(http_config, memory_top_k=2, memory_learn=False)
    async with Refiner(config) as refiner:
        personas = await refiner.personas()
        for text in [
            "The user is allergic to peanuts.",
            "The user plays chess on weekends.",
            "The user drives an old Volvo.",
            "The user's favourite painter is Monet.",
            "The user bakes cookies with their kids.",
        ]:
            await personas.add_fact("gus", text)
        await personas.set_attribute("gus", "Mental Health Status", "Mild anxiety")
        await refiner.arefine(
            {"messages": [user("Can I eat this peanut butter cookie?")], "user_id": "gus"}
        )
    prompt = critic_prompt(provider.calls_for("personalization")[0])
    assert "allergic to peanuts" in prompt and "bakes cookies" in prompt
    assert "Volvo" not in prompt and "Monet" not in prompt and "chess" not in prompt
    assert "anxiety" not in prompt  # PENGUIN attributes are the safety agent's


async def test_style_profile_and_inline_facts_always_count(provider, http_config):
    provider.script("memory", learns(style={"length": "short", "tone": "dry humour"}))
    provider.set_default("personalization", PASS)
    async with Refiner(memory_config(http_config)) as refiner:
        await refiner.arefine(
            {"messages": [user("Keep it short, and dry humour please.")], "user_id": "hu"}
        )
        await refiner.wait_for_memory()
        await refiner.arefine(
            {
                "messages": [user("Explain photosynthesis.")],
                "user_id": "hu",
                "persona": ["The user is a biology teacher."],
            }
        )
    prompt = critic_prompt(provider.calls_for("personalization")[1])
    assert '<fact id="f1">\nThe user is a biology teacher.' in prompt
    assert "How the user wants to be answered: tone: dry humour; length: short" in prompt


async def test_an_oversized_persona_is_trimmed_by_relevance(provider, http_config, capsys):
    filler = [f"The user once visited town number {i} on a rainy day." for i in range(60)]
    persona = [*filler[:30], "The user is allergic to peanuts.", *filler[30:]]
    async with Refiner(memory_config(http_config, memory_token_budget=60)) as refiner:
        result = await refiner.arefine(
            {"messages": [user("Is peanut butter OK for me?")], "persona": persona}
        )
    prompt = critic_prompt(provider.calls_for("personalization")[0])
    assert "allergic to peanuts" in prompt
    assert prompt.count("<fact id=") < 10
    assert result.reply
    assert "persona.trimmed" in capsys.readouterr().err


async def test_a_recorded_edit_changes_what_the_critic_sees_in_similar_contexts(
    provider, http_config
):
    provider.script(
        "edit_learner",
        {"preference": "Show the code first, then at most one sentence of explanation."},
        {"preference": "Give quantities in grams, not cups."},
    )
    provider.set_default("personalization", PASS)
    config = memory_config(http_config, memory_edit_k=1, memory_learn=False)
    coding = "How do I sort a dictionary by value in Python?"
    async with Refiner(config) as refiner:
        await refiner.arefine({"messages": [user(coding)], "user_id": "ivy"})
        learned = await refiner.record_edit(
            "ivy",
            reply="To reverse a list you can use slicing. Here is how: items[::-1]",
            edited_reply="items[::-1]\n\nSlicing with a step of -1 reverses the list.",
            context="How do I reverse a list in Python?",
        )
        await refiner.record_edit(
            "ivy",
            reply="Use 2 cups of flour.",
            edited_reply="Use 250 g of flour.",
            context=[user("How much flour for pancakes?")],
        )
        await refiner.arefine({"messages": [user(coding)], "user_id": "ivy"})
        await refiner.arefine(
            {"messages": [user("How much sugar goes into a sponge cake?")], "user_id": "ivy"}
        )
    before, coding_after, baking_after = map(critic_prompt, provider.calls_for("personalization"))
    assert learned is not None and learned.context == "How do I reverse a list in Python?"
    assert "Show the code first" not in before
    assert "learned from the user's edits: Show the code first" in coding_after
    assert "grams" not in coding_after
    assert "grams, not cups" in baking_after and "Show the code first" not in baking_after
    # the edit learner saw both versions of the reply, delimited
    edit_call = provider.calls_for("edit_learner")[0]
    assert '<reply version="edited">' in critic_prompt(edit_call)


async def test_an_edit_without_a_preference_stores_nothing(provider, http_config):
    provider.script("edit_learner", {"preference": ""})
    async with Refiner(memory_config(http_config)) as refiner:
        assert await refiner.record_edit("jo", "Teh answer", "The answer", "typo?") is None
        assert await refiner.record_edit("jo", "Same.", "Same.", "unchanged") is None
        assert await (await refiner.personas()).edits("jo") == []
    assert len(provider.calls_for("edit_learner")) == 1  # an unchanged reply costs no call


async def test_two_users_concurrently_never_see_each_others_facts(provider, http_config):
    """Every request made for one user is checked for the other's facts, learned ones too."""
    provider.latency_s = 0.02
    provider.set_default("personalization", PASS)

    def learn_from_the_query(call):
        query = re.findall(r"(topic (?:alice|bob)-\d+)", critic_prompt(call))[-1]
        return learns(f"The user keeps asking about {query}.")

    provider.set_default("memory", learn_from_the_query)
    async with Refiner(memory_config(http_config)) as refiner:
        personas = await refiner.personas()
        for name in ("alice", "bob"):
            for i in range(3):
                await personas.add_fact(name, f"The user collects {name}-stamp-{i}.")

        async def turns(name: str) -> None:
            for i in range(6):
                await refiner.arefine(
                    {"messages": [user(f"Tell me about topic {name}-{i}")], "user_id": name}
                )

        await asyncio.gather(turns("alice"), turns("bob"))
        await refiner.wait_for_memory()
    assert len(provider.calls_for("memory")) == 12
    for call in provider.calls:
        text = str(call.messages)
        owners = {name for name in ("alice", "bob") if name in text}
        assert len(owners) == 1, f"{call.agent} request mixes users: {owners}"
    seen = {
        name: " ".join(
            critic_prompt(c)
            for c in provider.calls_for("personalization")
            if name in str(c.messages)
        )
        for name in ("alice", "bob")
    }
    assert "alice-stamp" in seen["alice"] and "bob-stamp" in seen["bob"]
    assert "The user keeps asking about topic alice-" in seen["alice"]  # learned meanwhile


async def test_forget_leaves_nothing_of_the_user(provider, http_config, tmp_path):
    provider.script("memory", learns("The user is training for the Lisbon marathon."))
    provider.script("edit_learner", {"preference": "Answer in bullet points."})
    provider.set_default("personalization", PASS)
    home = tmp_path / "state"
    config = memory_config(http_config, checkpointer="sqlite", home=home)
    async with Refiner(config) as refiner:
        for thread in ("run", "food"):
            await refiner.arefine(
                {
                    "messages": [user("I'm training for the Lisbon marathon.")],
                    "user_id": "kim",
                    "thread_id": thread,
                }
            )
        await refiner.arefine({"messages": [user("hello")], "user_id": "lee", "thread_id": "run"})
        await refiner.record_edit("kim", "Run a lot.", "- Run\n- Rest", "How should I train?")
        personas = await refiner.personas()
        await personas.set_attribute("kim", "Emotional State", "Nervous about the race")
        await refiner.wait_for_memory()
        assert len(await personas.facts("kim")) == 1 and len(await personas.threads("kim")) == 2

        counts = await refiner.forget("kim")

        assert counts["threads"] == 2 and counts["facts"] == 1 and counts["edits"] == 1
        store = personas.store
        assert await store.asearch(user_namespace("kim"), limit=1000) == []
        assert await store.alist_namespaces(prefix=user_namespace("kim")) == []
        profile = await personas.get_profile("kim")
        assert profile.attributes == {} and profile.style.describe() is None
        for thread in ("run", "food"):
            state = await refiner._checkpointer.aget_tuple(
                {"configurable": {"thread_id": f"kim:{thread}"}}
            )
            assert state is None
        # the other user is untouched
        assert await personas.threads("lee") == ["run"]
        assert await refiner._checkpointer.aget_tuple({"configurable": {"thread_id": "lee:run"}})
    with sqlite3.connect(home / "memory.sqlite") as db:
        rows = db.execute("SELECT prefix FROM store WHERE prefix LIKE '%kim%'").fetchall()
    assert rows == []
    with sqlite3.connect(home / "threads.sqlite") as db:
        left = db.execute("SELECT thread_id FROM checkpoints WHERE thread_id LIKE 'kim:%'")
        assert left.fetchall() == []
        left = db.execute("SELECT thread_id FROM writes WHERE thread_id LIKE 'kim:%'")
        assert left.fetchall() == []
    # deleted text is overwritten on disk, not only unlinked (PRAGMA secure_delete)
    assert b"Lisbon marathon" not in (home / "memory.sqlite").read_bytes()


async def test_forget_runs_after_pending_memory_work(provider, http_config):
    provider.latency_s = 0.05
    provider.script("memory", learns("The user is a pilot."))
    async with Refiner(memory_config(http_config)) as refiner:
        await refiner.arefine({"messages": [user("I fly planes.")], "user_id": "mo"})
        await refiner.forget("mo")  # the extraction of the turn above is still pending
        facts = await (await refiner.personas()).facts("mo")
    assert facts == []


async def test_memory_on_postgres(provider, http_config, database_url):
    """The persona store on the local PostgreSQL (no pgvector: vectors ranked in Python)."""
    user_id = f"pg-{uuid.uuid4()}"
    provider.script("memory", learns("The user is vegetarian."))
    provider.set_default("personalization", PASS)
    config = memory_config(http_config, checkpointer="auto", database_url=database_url)
    async with Refiner(config) as refiner:
        personas = await refiner.personas()
        assert not personas.native
        await refiner.arefine(
            {"messages": [user("I'm vegetarian.")], "user_id": user_id, "thread_id": "t"}
        )
    async with Refiner(config) as other_process:
        await other_process.arefine(
            {"messages": [user("Dinner ideas?")], "user_id": user_id, "thread_id": "t"}
        )
        counts = await other_process.forget(user_id)
        personas = await other_process.personas()
        assert await personas.store.asearch(user_namespace(user_id), limit=100) == []
        assert (
            await other_process._checkpointer.aget_tuple(
                {"configurable": {"thread_id": f"{user_id}:t"}}
            )
            is None
        )
    assert "The user is vegetarian." in critic_prompt(provider.calls_for("personalization")[1])
    assert counts["facts"] == 1 and counts["threads"] == 1


async def test_edits_need_a_named_user(provider, http_config):
    async with Refiner(memory_config(http_config)) as refiner:
        with pytest.raises(ValueError, match="user_id"):
            await refiner.record_edit("default", "a", "b", "c")


async def test_an_unavailable_store_degrades_the_turn_to_inline_facts(provider, http_config):
    closed = "postgresql://postgres@127.0.0.1:9/nothing"  # nothing listens on port 9
    config = memory_config(http_config, checkpointer="postgres", database_url=closed, kb="off")
    provider.script("personalization", PASS, PASS)
    async with Refiner(config) as refiner:
        result = await refiner.arefine(
            {"messages": [user("hi")], "user_id": "no", "persona": ["The user is Ann."]}
        )
        anonymous = await refiner.arefine({"messages": [user("hi")]})
    assert result.reply and [d.step for d in result.degraded] == ["memory"]
    assert "persona memory unavailable" in result.degraded[0].reason
    assert "The user is Ann." in critic_prompt(provider.calls_for("personalization")[0])
    assert anonymous.degraded is None


async def test_without_the_embeddings_extra_turns_work_and_forget_erases(
    provider, http_config, monkeypatch
):
    """The base install (`pip install redraft`, no local model): no knowledge base is no
    `retrieve` degradation; memory says why it cannot search and makes no extraction call;
    the store still opens, so `forget` erases the user's threads and profile."""
    monkeypatch.setattr("redraft.embeddings.local_model_installed", lambda: False)
    provider.set_default("personalization", PASS)
    config = memory_config(http_config, checkpointer="sqlite")
    async with Refiner(config) as refiner:
        result = await refiner.arefine(
            {"messages": [user("I'm vegetarian.")], "user_id": "bo", "thread_id": "t1"}
        )
        await refiner.wait_for_memory()
        personas = await refiner.personas()
        await personas.set_attribute("bo", "Age", "34")
        assert await personas.threads("bo") == ["t1"]
        counts = await refiner.forget("bo")
        assert await personas.threads("bo") == []
        assert (await personas.get_profile("bo")).attributes == {}
    assert result.reply
    assert [d.step for d in result.degraded] == ["memory"]
    assert "redraft[embeddings]" in result.degraded[0].reason
    assert provider.calls_for("memory") == []
    assert counts["threads"] == 1
