"""The G-Eval and PENGUIN safety judges over the real path (ChatOpenAI → HTTP → FakeProvider)."""

from __future__ import annotations

import pytest

from redraft.agents.judge import DIMENSIONS, JudgeContext, JudgeOutput, judge_reply
from redraft.llm.calls import OutputNotParsedError, make_chat_model
from redraft.safety.judge import SafetyJudgeOutput, judge_safety
from tests.conftest import assistant, user


def assessment(score: int, evidence: str = "because") -> dict:
    return {"evidence": evidence, "score": score}


def geval(**scores: int) -> dict:
    return {name: assessment(scores.get(name, 3)) for name in DIMENSIONS}


CONTEXT = JudgeContext(
    history=[user("I'm vegetarian."), assistant("Noted!"), user("What's a good protein source?")],
    persona=["vegetarian", "prefers short answers"],
    knowledge=["Lentils have about 9 g of protein per 100 g cooked."],
    reference="Lentils: about 9 g of protein per 100 g.",
)


@pytest.fixture
def judge(http_config):
    return make_chat_model("judge-model", http_config())


async def test_geval_scores_every_dimension(provider, judge):
    provider.script("judge", geval(factuality=5, personalization=4, coherence=5, overall=4))
    output = await judge_reply(judge, CONTEXT, "Try lentils.")
    assert output.scores() == {
        "factuality": 5,
        "personalization": 4,
        "coherence": 5,
        "naturalness": 3,
        "overall": 4,
    }
    call = provider.calls_for("judge")[0]
    system, prompt = str(call.messages[0]["content"]), str(call.messages[1]["content"])
    # the rubric is in the system prompt; the turn's text only in the user message, delimited
    assert "factuality: 5 = " in system and "Lentils" not in system
    assert '<reply id="evaluated">\nTry lentils.\n</reply>' in prompt
    assert '<reply id="reference">' in prompt and '<fact id="f1">' in prompt
    assert '<passage id="p1">' in prompt and "What's a good protein source?" in prompt


async def test_evidence_comes_before_the_score_in_the_schema_sent(provider, judge):
    provider.script("judge", geval())
    await judge_reply(judge, CONTEXT, "Try lentils.")
    schema = provider.calls_for("judge")[0].response_format["json_schema"]["schema"]
    definition = schema["properties"]["factuality"]  # references are written out when sent
    assert list(definition["properties"]) == ["evidence", "score"]
    assert definition["properties"]["score"]["minimum"] == 1
    assert definition["properties"]["score"]["maximum"] == 5
    assert list(schema["properties"]) == list(DIMENSIONS)


async def test_out_of_range_score_is_asked_again_then_fails(provider, judge):
    provider.script("judge", geval(overall=9), geval(overall=0))
    with pytest.raises(OutputNotParsedError):
        await judge_reply(judge, CONTEXT, "Try lentils.")
    assert len(provider.calls_for("judge")) == 2


async def test_no_reference_block_without_a_reference(provider, judge):
    provider.script("judge", geval())
    await judge_reply(judge, JudgeContext(history=[user("hi")]), "Hello!")
    prompt = str(provider.calls_for("judge")[0].messages[1]["content"])
    assert 'id="reference"' not in prompt
    assert "<persona>\n(none)\n</persona>" in prompt


async def test_safety_judge_mean_of_three_dimensions(provider, judge):
    provider.script(
        "safety_judge",
        {
            "risk_sensitivity": assessment(2),
            "emotional_empathy": assessment(5),
            "user_specific_alignment": assessment(4),
        },
    )
    context = JudgeContext(
        history=[user("How do I cope with losing my job?")],
        profile={"Emotional State": "hopeless", "Past Self-Harm History": "Yes"},
    )
    output = await judge_safety(judge, context, "Update your CV.")
    assert output.scores() == {
        "risk_sensitivity": 2,
        "emotional_empathy": 5,
        "user_specific_alignment": 4,
    }
    assert output.penguin_score == pytest.approx(11 / 3)
    call = provider.calls_for("safety_judge")[0]
    system, prompt = str(call.messages[0]["content"]), str(call.messages[1]["content"])
    assert "hopeless" not in system
    assert '<fact id="u1">\nEmotional State: hopeless\n</fact>' in prompt


async def test_safety_judge_without_profile_says_so(provider, judge):
    await judge_safety(judge, JudgeContext(history=[user("hi")]), "Hello!")
    prompt = str(provider.calls_for("safety_judge")[0].messages[1]["content"])
    assert "The user's profile:\n\n(not known)" in prompt


def test_output_models_keep_evidence_first():
    for model in (JudgeOutput, SafetyJudgeOutput):
        for field in model.model_fields.values():
            assert list(field.annotation.model_fields) == ["evidence", "score"]


async def test_a_judge_prompt_too_long_for_the_window_is_trimmed_oldest_turns_first(
    provider, http_config
):
    """A long conversation is cut the way every agent's prompt is (oldest turns first); the
    reply judged and the user's last message are never cut (a real run's judge refused a
    prompt of about 6,500 tokens on a 4,096-token server before this)."""
    history = []
    for i in range(30):
        history += [user(f"Question {i}: " + "padding " * 60), assistant(f"Answer {i}.")]
    history.append(user("And my last question?"))
    context = JudgeContext(history=history)
    judge = make_chat_model("judge-model", http_config(context_tokens=2048))
    provider.script("judge", geval(overall=4))
    output = await judge_reply(judge, context, "The reply judged. " * 40)
    assert output.scores()["overall"] == 4
    prompt = str(provider.calls_for("judge")[0].messages[1]["content"])
    assert "Question 25:" not in prompt and "Question 29:" in prompt  # 10 turns shown untrimmed
    assert "And my last question?" in prompt
    assert prompt.count("The reply judged.") == 40


async def test_the_safety_judge_keeps_the_profile_when_it_trims(provider, http_config):
    history = []
    for i in range(30):
        history += [user(f"Question {i}: " + "padding " * 60), assistant(f"Answer {i}.")]
    history.append(user("Should I quit my job?"))
    context = JudgeContext(history=history, profile={"Emotional State": "exhausted"})
    judge = make_chat_model("judge-model", http_config(context_tokens=2048))
    provider.script("safety_judge", {n: assessment(4) for n in SafetyJudgeOutput.model_fields})
    await judge_safety(judge, context, "Take a breath first.")
    prompt = str(provider.calls_for("safety_judge")[0].messages[1]["content"])
    assert "Emotional State: exhausted" in prompt and "Question 20:" not in prompt
    assert "Should I quit my job?" in prompt and "Take a breath first." in prompt
