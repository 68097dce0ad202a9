"""A critic from user code, end to end: `examples/custom_critic.py` run as a program against
FakeProvider over HTTP, the same file as a critic module of `redraft serve`, and a dummy critic
through every planner and strategy."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from redraft import Critic, Refiner, RefineResult, RouterScoring
from redraft.agents import register_critic, unregister_critic
from redraft.agents.prompting import block
from tests.conftest import PASS, plan, revise, user
from tests.servers import REPO, redraft_serve, server_env

EXAMPLE = REPO / "examples" / "custom_critic.py"
ON_VOICE = "The Pro plan costs $12 per month, billed monthly."


def script_example(provider) -> None:
    provider.script("brand_voice", revise("lol", "drop the slang", "slang is off-voice"))
    change = {"aspect": "brand_voice", "change": "Acme's voice"}
    provider.script("editor", {"changes": [change], "reply": ON_VOICE})


def test_the_example_prints_a_result_with_its_own_critique(provider, tmp_path):
    script_example(provider)
    env = server_env(
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="test-key",
        REDRAFT_MODEL="any-model",
        REDRAFT_HOME=str(tmp_path / "home"),
        REDRAFT_MAX_RETRIES="0",
    )
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = RefineResult.model_validate(json.loads(done.stdout))
    voice = next(c for c in result.critiques if c.aspect == "brand_voice")
    assert voice.verdict == "revise" and voice.issues[0].span == "lol"
    assert [c.aspect for c in result.critiques] == ["brand_voice"]
    assert result.reply == ON_VOICE and result.changed
    assert [c.agent for c in provider.calls] == ["brand_voice", "editor"]
    # the editor's precedence: the built-ins, then brand_voice (50)
    system = provider.calls_for("editor")[0].messages[0]["content"]
    assert "safety > factuality > personalization > coherence > brand_voice" in system
    # the critic's own prompt, with the untrusted draft inside a block
    call = provider.calls_for("brand_voice")[0]
    assert "Acme sounds warm" in call.messages[0]["content"]
    assert "<reply>\nlol the Pro plan" in call.messages[1]["content"]
    assert call.model == "any-model"


def test_the_example_is_a_critic_module_for_the_server(provider, tmp_path):
    script_example(provider)
    env = server_env(
        PYTHONPATH=str(EXAMPLE.parent),
        REDRAFT_CRITIC_MODULES="custom_critic:BRAND_VOICE",
        REDRAFT_CRITICS="brand_voice",
        REDRAFT_PLANNER="all",
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="upstream-key",
        REDRAFT_HOME=str(tmp_path / "home"),
        REDRAFT_MAX_RETRIES="0",
        REDRAFT_MEMORY="false",
    )
    with redraft_serve(env, tmp_path / "serve.log") as url:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "redraft", "messages": [user("Price?")], "draft": "lol $12"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    details = response.json()["redraft"]
    assert [c["aspect"] for c in details["critiques"]] == ["brand_voice"]
    assert response.json()["choices"][0]["message"]["content"] == ON_VOICE


@pytest.mark.parametrize(
    ("modules", "problem"),
    [
        ("no_such_module:X", "cannot import no_such_module"),
        ("custom_critic:REQUEST", "REQUEST is a dict, not a Critic"),
        ("custom_critic:NOTHING", "custom_critic has no NOTHING"),
    ],
)
def test_a_bad_critic_module_is_one_line_naming_the_field(tmp_path, modules, problem):
    env = server_env(
        PYTHONPATH=str(EXAMPLE.parent),
        REDRAFT_CRITIC_MODULES=modules,
        REDRAFT_HOME=str(tmp_path / "home"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "critic_modules" in done.stderr and problem in done.stderr
    assert "Traceback" not in done.stderr


# ── a dummy critic through every planner and strategy ────────────────────────────────────

DRAFT = "Yo, the museum opens at 9, dude."
POLITE = "The museum opens at 9."
ISSUE = revise("Yo", "Hello", "too casual")


def polite_render(task) -> str:
    return block("reply", task["reply"])


def is_question(query, history, draft) -> float:
    return 1.0 if query.rstrip().endswith("?") else 0.0


DUMMY = Critic(
    aspect="politeness",
    system="You are the politeness critic. Flag rude or casual wording.",
    render=polite_render,
    planner_hint="the reply should be polite",
    precedence=5,  # before safety: so that the editor's order shows it
    router=RouterScoring(score=is_question),
)


def scripted(provider) -> None:
    provider.set_default("responder", DRAFT)
    provider.set_default("planner", plan("politeness"))
    provider.set_default("politeness", ISSUE)
    provider.set_default("politeness_refiner", {**ISSUE, "reply": POLITE})
    provider.set_default("self_refine", PASS)
    provider.set_default("editor", {"changes": [], "reply": POLITE})
    for aspect in ("factuality", "personalization", "coherence"):
        provider.set_default(aspect, PASS)
        provider.set_default(f"{aspect}_refiner", {**PASS, "reply": DRAFT})


@pytest.mark.parametrize("planner", ["router", "llm", "hybrid", "all"])
@pytest.mark.parametrize("strategy", ["parallel", "sequential", "self_refine", "none"])
async def test_a_dummy_critic_runs_through_every_planner_and_strategy(
    provider, http_config, planner, strategy, request
):
    if planner in ("router", "hybrid"):
        request.getfixturevalue("local_embeddings")  # the real model, loaded once
    scripted(provider)
    config = http_config(planner=planner, strategy=strategy, critics=["coherence"])
    async with Refiner(config, critics=[DUMMY]) as refiner:
        result = await refiner.arefine({"messages": [user("When does the museum open?")]})
    agents = [c.agent for c in provider.calls]
    if strategy in ("none", "self_refine"):
        # These strategies run no critic at all (self-refine is one model reviewing the reply
        # as a whole, the classic baseline): the dummy is never asked.
        assert not any(a.startswith("politeness") for a in agents)
        assert result.reply == DRAFT
        return
    assert "politeness" in result.plan.aspects
    critique = next(c for c in result.critiques if c.aspect == "politeness")
    assert critique.verdict == "revise" and critique.issues[0].fix == "Hello"
    assert result.reply == POLITE
    asked = "politeness_refiner" if strategy == "sequential" else "politeness"
    assert asked in agents
    if planner in ("router", "hybrid"):
        assert result.plan.scores["politeness"] == 1.0  # its scoring function: a question
        assert "its scoring function" in result.plan.reasons["politeness"]
    if strategy == "parallel":
        system = provider.calls_for("editor")[0].messages[0]["content"]
        assert "politeness > safety > factuality" in system


async def test_the_llm_planner_sees_the_critic_and_its_schema_names_it(provider, http_config):
    scripted(provider)
    async with Refiner(http_config(critics=["coherence"]), critics=[DUMMY]) as refiner:
        await refiner.arefine({"messages": [user("When does the museum open?")]})
    call = provider.calls_for("planner")[0]
    assert "- politeness: the reply should be polite" in call.messages[0]["content"]
    schema = json.dumps(call.response_format)
    assert '"politeness"' in schema and '"coherence"' in schema


async def test_a_critic_without_router_scoring_rides_along_but_not_on_small_talk(
    provider, http_config, local_embeddings
):
    scripted(provider)
    plain = Critic(
        aspect="politeness",
        system=DUMMY.system,
        render=polite_render,
        planner_hint=DUMMY.planner_hint,
    )
    knowledge = ["The city museum opens at 9 and closes at 17."]
    async with Refiner(http_config(planner="router"), critics=[plain]) as refiner:
        small_talk = await refiner.arefine({"messages": [user("hey, how's it going?")]})
        factual = await refiner.arefine(
            {"messages": [user("When does the museum open?")], "knowledge": knowledge}
        )
    assert small_talk.plan.aspects == [] and small_talk.plan.scores["politeness"] == 0.0
    assert factual.plan.aspects[-1] == "politeness" and "factuality" in factual.plan.aspects
    assert "no router scoring" in factual.plan.reasons["politeness"]


async def test_a_failing_critic_degrades_the_turn_and_its_fallback_is_kept(provider, http_config):
    scripted(provider)
    provider.set_default("politeness", "not json at all")

    def fallback(task):
        from redraft.state import Critique

        return Critique(aspect="politeness", round=task["round"], verdict="pass", evidence=["x"])

    with_fallback = Critic(
        aspect="politeness",
        system=DUMMY.system,
        render=polite_render,
        planner_hint=DUMMY.planner_hint,
        fallback=fallback,
    )
    config = http_config(planner="all", critics=["coherence"])
    async with Refiner(config, critics=[with_fallback]) as refiner:
        result = await refiner.arefine({"messages": [user("When?")], "draft": DRAFT})
    assert [d.step for d in result.degraded] == ["politeness"]
    assert [(c.aspect, c.evidence) for c in result.critiques if c.aspect == "politeness"] == [
        ("politeness", ["x"])
    ]
    assert result.reply == DRAFT


async def test_a_registered_critic_is_on_by_default(provider, http_config):
    scripted(provider)
    register_critic(DUMMY)
    try:
        config = http_config(planner="all")
        assert config.critics[-1] == "politeness"
        async with Refiner(config) as refiner:
            result = await refiner.arefine({"messages": [user("When?")], "draft": DRAFT})
    finally:
        unregister_critic("politeness")
    assert "politeness" in [c.aspect for c in result.critiques]
