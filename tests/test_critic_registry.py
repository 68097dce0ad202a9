"""The critic registry: what a Critic may be, registration, precedence, the config's and the
planner's view of it, and the docs' list of built-ins. Fast: no model, no HTTP (but the router
tests at the end, which use the real embedding model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from redraft import Critic, RouterScoring, register_critic
from redraft.agents import (
    BUILTIN,
    CRITICS,
    CriticError,
    coherence,
    critic_set,
    editor,
    factuality,
    personalization,
    planner,
    unregister_critic,
)
from redraft.agents.critic import DEFAULT_PRECEDENCE, step_output
from redraft.agents.prompting import block
from redraft.config import RefinerConfig, RunSettings
from redraft.routing import get_router
from redraft.safety import critic as safety
from redraft.state import CriticOutput, SequentialStepOutput, planner_output
from tests.conftest import user

DOCS = Path(__file__).parent.parent / "docs" / "critics.md"


def render(task) -> str:
    return block("reply", task["reply"])


def critic(aspect: str = "tone", **fields) -> Critic:
    values = {"system": "Check the tone.", "render": render, "planner_hint": "tone matters"}
    return Critic(aspect=aspect, **{**values, **fields})


@pytest.fixture
def registered():
    """Critics registered by a test are forgotten after it (the registry is process-wide)."""
    names: list[str] = []

    def register(item: Critic, **options) -> Critic:
        register_critic(item, **options)
        names.append(item.aspect)
        return item

    yield register
    for name in reversed(names):
        if name in CRITICS and CRITICS[name] not in BUILTIN:
            unregister_critic(name)


# ── what a critic may be ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"aspect": "Tone"}, "lower-case letters and underscores"),
        ({"aspect": "tone2"}, "lower-case letters and underscores"),
        ({"aspect": "brand voice"}, "lower-case letters and underscores"),
        ({"aspect": "t" * 41}, "lower-case letters and underscores"),
        ({"aspect": "editor"}, "taken by another agent or node"),
        ({"aspect": "plan"}, "taken by another agent or node"),
        ({"aspect": "tone_refiner"}, "taken by another agent or node"),
        ({"aspect": "default"}, "taken by another agent or node"),
        ({"system": "  "}, "`system` must be a non-empty prompt"),
        ({"planner_hint": "two\nlines"}, "`planner_hint` must be one non-empty line"),
        ({"precedence": True}, "`precedence` must be an integer"),
        ({"precedence": 1.5}, "`precedence` must be an integer"),
        ({"output": dict}, "`output` must be CriticOutput or a subclass"),
        ({"output": SequentialStepOutput}, "`output` must not have a `reply` field"),
        ({"render": "not a function"}, "`render` must be a function"),
        ({"finalize": 3}, "`finalize` must be a function"),
        ({"router": {"examples": ["x"]}}, "`router` must be a RouterScoring"),
    ],
)
def test_a_bad_critic_is_refused_saying_why(fields, problem):
    with pytest.raises(CriticError, match="critic") as caught:
        critic(**fields)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "needs examples, a score function, or both"),
        ({"examples": ["ok", " "]}, "non-empty strings"),
        ({"score": 0.5}, "must be a function"),
        ({"examples": ["x"], "similar_at": 1.0}, "between 0 and 1"),
    ],
)
def test_bad_router_scoring_is_refused(fields, problem):
    with pytest.raises(CriticError, match=problem):
        RouterScoring(**fields)


def test_router_examples_are_kept_as_a_tuple():
    assert RouterScoring(examples=["a", "b"]).examples == ("a", "b")


def test_each_built_in_module_exports_its_critic():
    modules = (factuality, personalization, coherence, safety)
    assert [m.CRITIC for m in modules] == list(BUILTIN)
    for module in modules:
        assert module.CRITIC.aspect == module.ASPECT and module.CRITIC.system == module.SYSTEM
        assert not hasattr(module, "READS") and not hasattr(module, "OUTPUT")
    assert safety.CRITIC.fallback is safety.fallback and safety.CRITIC.prepare is safety.prepare
    assert factuality.CRITIC.output is factuality.FactualityOutput


# ── registration ──────────────────────────────────────────────────────────────────────────


def test_register_and_unregister(registered):
    tone = registered(critic())
    assert CRITICS["tone"] is tone and list(CRITICS)[-1] == "tone"
    register_critic(tone)  # the same object again: nothing happens
    with pytest.raises(CriticError, match="'tone' is already registered"):
        register_critic(critic())
    unregister_critic("tone")
    assert "tone" not in CRITICS
    with pytest.raises(CriticError, match="no critic 'tone'"):
        unregister_critic("tone")


def test_a_built_in_is_replaced_only_when_asked_and_comes_back(registered):
    mine = critic("coherence", precedence=40)
    with pytest.raises(CriticError, match="already registered"):
        register_critic(mine)
    registered(mine, replace=True)
    assert CRITICS["coherence"] is mine
    assert list(CRITICS)[:4] == ["factuality", "personalization", "coherence", "safety"]
    unregister_critic("coherence")
    assert CRITICS["coherence"] is coherence.CRITIC
    with pytest.raises(CriticError, match="built-in"):
        unregister_critic("safety")


def test_register_takes_only_critics():
    with pytest.raises(CriticError, match="takes a Critic, not str"):
        register_critic("tone")  # type: ignore[arg-type]


def test_a_refiners_own_critics_must_not_clash():
    tone = critic()
    assert critic_set([tone, tone]).always == ("tone",)
    with pytest.raises(CriticError, match="'tone' is given twice"):
        critic_set([tone, critic()])
    with pytest.raises(CriticError, match="'factuality' is already registered"):
        critic_set([critic("factuality")])
    with pytest.raises(CriticError, match="expected Critic objects"):
        critic_set(["tone"])  # type: ignore[list-item]


def test_a_refiners_own_critics_are_always_among_the_choices():
    lineup = critic_set([critic()])
    assert lineup.active(["coherence"]) == ["coherence", "tone"]
    assert lineup.active(["tone", "safety"]) == ["tone", "safety"]
    assert lineup.active(["nonexistent", "safety"]) == ["safety", "tone"]


# ── precedence ────────────────────────────────────────────────────────────────────────────


def test_built_in_precedence_is_safety_factuality_personalization_coherence():
    assert critic_set().precedence == ("safety", "factuality", "personalization", "coherence")
    assert "(safety > factuality > personalization > coherence)" in editor.SYSTEM


def test_a_user_critic_comes_after_the_built_ins_unless_it_says_otherwise():
    assert DEFAULT_PRECEDENCE > max(c.precedence for c in BUILTIN)
    later, first = critic("tone"), critic("legal", precedence=5)
    tie = critic("brand", precedence=DEFAULT_PRECEDENCE)
    lineup = critic_set([later, first, tie])
    assert lineup.precedence == (
        "legal",
        "safety",
        "factuality",
        "personalization",
        "coherence",
        "tone",  # a tie goes to the critic given first
        "brand",
    )
    # the graph's nodes keep registration order
    assert list(lineup)[-3:] == ["tone", "legal", "brand"]


def test_the_merge_orders_and_resolves_by_the_critics_precedence():
    from redraft.state import Critique, Issue

    def revise(aspect):
        issue = Issue(span="the words", problem="p", fix=f"{aspect} fix")
        return Critique(aspect=aspect, verdict="revise", issues=[issue])

    order = critic_set([critic("legal", precedence=5)]).precedence
    kept, overridden = editor.resolve_conflicts([revise("safety"), revise("legal")], order)
    assert [c.aspect for c in kept] == ["legal"]
    assert [(o.aspect, o.by) for o in overridden] == [("safety", "legal")]
    assert "(legal > safety > factuality" in editor.system_prompt(order)


# ── the config ────────────────────────────────────────────────────────────────────────────


def test_an_unknown_critic_is_an_error_listing_the_known_ones(registered):
    registered(critic())
    with pytest.raises(ValidationError) as caught:
        RefinerConfig(critics=["factuality", "tnoe"])
    message = str(caught.value)
    assert "critics" in message and "unknown critic(s) 'tnoe'" in message
    assert "known critics: factuality, personalization, coherence, safety, tone" in message


def test_run_settings_check_the_critics_too():
    with pytest.raises(ValidationError, match="unknown critic"):
        RunSettings(critics=["tone"])
    with pytest.raises(ValidationError, match="at least one critic"):
        RunSettings(critics=[])
    assert RunSettings(critics="coherence, safety,coherence").critics == ["coherence", "safety"]


def test_the_default_is_every_registered_critic(registered, monkeypatch):
    assert RefinerConfig().critics == ["factuality", "personalization", "coherence", "safety"]
    registered(critic())
    assert RefinerConfig().critics[-1] == "tone"
    monkeypatch.setenv("REDRAFT_CRITICS", "tone,safety")
    assert RefinerConfig().critics == ["tone", "safety"]


@pytest.fixture
def critic_module(tmp_path, monkeypatch):
    """An importable module of user critics, forgotten (and unregistered) afterwards."""
    (tmp_path / "my_critics.py").write_text(
        "from redraft import Critic\n"
        "from redraft.agents.prompting import block\n"
        "def render(task):\n"
        "    return block('reply', task['reply'])\n"
        "TONE = Critic(aspect='tone', system='Tone.', render=render, planner_hint='tone')\n"
        "LEGAL = Critic(aspect='legal', system='Law.', render=render, planner_hint='law')\n"
        "CRITICS = [TONE, LEGAL]\n"
        "NOT_A_CRITIC = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_critics"
    sys.modules.pop("my_critics", None)
    for name in ("tone", "legal"):
        if name in CRITICS:
            unregister_critic(name)


def test_critic_modules_register_from_the_environment(critic_module, monkeypatch):
    monkeypatch.setenv("REDRAFT_CRITIC_MODULES", f"{critic_module}:TONE")
    monkeypatch.setenv("REDRAFT_CRITICS", "tone,coherence")
    config = RefinerConfig()
    assert config.critics == ["tone", "coherence"] and "legal" not in CRITICS
    # read again (another config, another worker): the same critics, no clash
    assert RefinerConfig().critic_modules == [f"{critic_module}:TONE"]


def test_a_module_without_a_name_gives_its_critics_list(critic_module):
    config = RefinerConfig(critic_modules=[critic_module])
    assert config.critics[-2:] == ["tone", "legal"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("my_critics:NOT_A_CRITIC", "NOT_A_CRITIC is a int, not a Critic or a list of them"),
        ("my_critics:MISSING", "my_critics has no MISSING"),
        ("no_such_package.critics", "cannot import no_such_package.critics"),
        ("my critics", "use package.module or package.module:NAME"),
    ],
)
def test_a_bad_critic_module_names_the_field(critic_module, entry, problem):
    with pytest.raises(ValidationError) as caught:
        RefinerConfig(critic_modules=[entry])
    errors = caught.value.errors()
    assert errors[0]["loc"] == ("critic_modules",)
    assert problem in errors[0]["msg"]


def test_critic_modules_are_not_a_run_setting():
    assert "critic_modules" not in RunSettings.model_fields


# ── the planner ───────────────────────────────────────────────────────────────────────────


def test_the_planners_hints_come_from_the_critics():
    prompt = planner.system_prompt(["safety", "tone"], critic_set([critic()]))
    assert f"- safety: {safety.CRITIC.planner_hint}\n- tone: tone matters\n" in prompt
    assert "- factuality" not in prompt


def test_the_planners_schema_names_only_known_critics():
    schema = planner_output(("coherence", "tone"))
    assert planner_output(("coherence", "tone")) is schema  # built once
    wire = json.dumps(schema.model_json_schema())
    assert '"enum": ["coherence", "tone"]' in wire
    assert schema.model_validate({"steps": [{"aspect": "tone", "reason": "r"}]}).steps
    with pytest.raises(ValidationError):
        schema.model_validate({"steps": [{"aspect": "safety", "reason": "r"}]})


def test_a_sequential_step_adds_the_reply_to_the_critics_own_schema():
    assert step_output(CriticOutput) is SequentialStepOutput
    step = step_output(safety.SafetyOutput)
    assert step is step_output(safety.SafetyOutput)
    assert list(step.model_fields)[-1] == "reply"
    assert {"risk", "ask_attribute", "verdict"} <= set(step.model_fields)


# ── the docs' list ────────────────────────────────────────────────────────────────────────


def test_the_docs_list_every_built_in_critic():
    page = DOCS.read_text(encoding="utf-8")
    for item in BUILTIN:
        row = f"| `{item.aspect}` | {item.precedence} | {item.planner_hint} |"
        assert row in page, f"docs/critics.md misses the row {row}"


# ── the router ────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def router(local_embeddings):
    router = get_router(RefinerConfig())
    router.load()
    return router


PRICING = RouterScoring(examples=("How much does the Pro plan cost?", "What are your prices?"))


def test_the_router_scores_a_critic_by_its_examples(router):
    pricing = critic("pricing", router=PRICING)
    asked = router.route([user("What's the price of the Pro plan per month?")], critics=[pricing])
    chatted = router.route([user("hey, how's it going?")], critics=[pricing])
    assert "pricing" in asked.aspects and asked.scores["pricing"] >= 0.5
    assert "closest example" in asked.reasons["pricing"]
    assert "pricing" not in chatted.aspects and chatted.scores["pricing"] < 0.5


def test_the_router_scores_a_critic_by_its_function(router):
    calls = []

    def score(query, history, draft):
        calls.append((query, len(history), draft))
        return 7.0 if "refund" in query else float("nan")  # out of range: kept to 0–1

    refunds = critic("refunds", router=RouterScoring(score=score))
    route = router.route([user("I want a refund.")], draft="Sure.", critics=[refunds])
    other = router.route([user("hey, how's it going?")], critics=[refunds])
    assert route.scores["refunds"] == 1.0 and "refunds" in route.aspects
    assert other.scores["refunds"] == 0.0 and "refunds" not in other.aspects
    assert calls[0] == ("I want a refund.", 1, "Sure.")


def test_without_critics_the_router_scores_its_own_aspects_only(router):
    route = router.route([user("When was the Eiffel Tower finished?")])
    assert set(route.scores) == {"factuality", "personalization", "coherence", "safety"}


def test_the_docs_offline_example_runs():
    example = DOCS.read_text(encoding="utf-8").split("## Testing it offline", 1)[1]
    code = example.split("```python\n", 1)[1].split("```", 1)[0]
    sys.path.insert(0, str(DOCS.parent.parent / "examples"))
    try:
        from custom_critic import BRAND_VOICE
    finally:
        sys.path.pop(0)
    scope = {"BRAND_VOICE": BRAND_VOICE}
    exec(compile(code, "docs/critics.md example", "exec"), scope)
    result = scope["result"]
    assert [(c.aspect, c.verdict) for c in result.critiques][-1] == ("brand_voice", "revise")
    assert result.reply == "The Pro plan costs $15 per month."
