"""Real-model behaviour, made to happen on purpose with the fake provider: an endpoint that
refuses json_schema, output that does not parse or is out of range, prompts too long for the
context window, a server that serves one request at a time, retries, and the two ways small
models lose a fix (a safety check that fails to parse, an editor that copies the reply)."""

from __future__ import annotations

import time

import pytest

from redraft import Refiner
from redraft.llm import direct
from redraft.llm.endpoints import known_endpoint
from redraft.llm.output import read_output
from redraft.safety.critic import CAUTION
from redraft.state import CriticOutput, EditorOutput
from redraft.testing import Fail, Fault
from redraft.testing.fake_provider import RecordedCall
from tests.conftest import CRITIC_AGENTS, PASS, assistant, plan, revise, user

REFUSAL = Fail(
    500,
    "1 validation error: ('body', 'response_format', 'type'): "
    "Input should be 'text' or 'json_object'",
)
AGENTS = ("planner", *CRITIC_AGENTS, "editor")


@pytest.fixture(autouse=True, params=["direct", "langchain"])
def provider_path(request, monkeypatch) -> str:
    """Every test on both provider paths: redraft's direct one (the default for a model built by
    name) and LangChain's (the model left unregistered, as a user's own chat model is)."""
    if request.param == "langchain":
        monkeypatch.setattr(direct, "register", lambda model, target: None)
    return request.param


def refuse_json_schema(call: RecordedCall):
    """What llama-cpp-python's server does: json_schema is a 500; tools work."""
    if (call.response_format or {}).get("type") == "json_schema":
        return REFUSAL
    if call.agent == "planner":
        return plan(*CRITIC_AGENTS)
    return None  # the fake provider's answer for the schema it was sent


def request(**extra) -> dict:
    return {"messages": [user("When was the Eiffel Tower finished?")], **extra}


async def test_auto_falls_back_from_a_refused_json_schema_and_keeps_what_worked(
    provider, http_config
):
    for agent in AGENTS:
        provider.set_default(agent, refuse_json_schema)
    async with Refiner(http_config(critics=list(CRITIC_AGENTS))) as refiner:
        first = await refiner.arefine(request(draft="It was finished in 1889."))
        refused = sum(1 for c in provider.calls if c.status == 500)
        second = await refiner.arefine(request(draft="It was finished in 1889."))
    assert first.degraded is None and second.degraded is None
    endpoint = known_endpoint(provider.base_url, "gpt-4o-mini")
    assert endpoint is not None and endpoint.mode == "function_calling"
    assert "json_schema" in endpoint.rejected
    # once known, json_schema is not tried again
    assert sum(1 for c in provider.calls if c.status == 500) == refused
    later = provider.calls[-4:]
    assert {c.agent for c in later} == {"planner", *CRITIC_AGENTS}
    assert all(c.tools and not c.response_format for c in later)
    # the refused tries are counted, as failed calls
    assert first.usage.failed_calls == refused and second.usage.failed_calls == 0


async def test_an_explicit_mode_never_falls_back(provider, http_config):
    for agent in AGENTS:
        provider.set_default(agent, refuse_json_schema)
    config = http_config(critics=["factuality"], structured_output="json_schema")
    async with Refiner(config) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1889."))
    assert {d.step for d in result.degraded or []} >= {"plan", "factuality"}
    assert not any(c.tools for c in provider.calls)


async def test_output_that_does_not_parse_moves_auto_to_the_next_mode(provider, http_config):
    def chatty(call: RecordedCall):
        if (call.response_format or {}).get("type") == "json_schema":
            return "Sure! The reply looks fine to me."
        return None

    for agent in AGENTS:
        provider.set_default(agent, chatty)
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1889."))
    assert result.degraded is None
    assert known_endpoint(provider.base_url, "gpt-4o-mini").mode == "function_calling"


# ── reading real model output ────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "raw",
    [
        '```json\n{"verdict": "pass", "issues": [], "confidence": 0.9}\n```',
        'Here is my review:\n{"verdict": "pass", "confidence": 0.9}\nHope it helps!',
        '{"Verdict": "Pass", "confidence": 90}',
        '{"verdict": " PASS ", "issues": null, "confidence": "0.9"}',
        {"verdict": "pass", "issues": {"span": "a", "problem": "b", "fix": "c"}},
    ],
)
def test_small_model_output_is_mended_where_the_meaning_is_clear(raw):
    output = read_output(CriticOutput, raw)
    assert output.verdict == "pass"
    assert 0 <= output.confidence <= 1


@pytest.mark.parametrize(
    "raw",
    [
        '{"verdict": "maybe", "confidence": 0.5}',  # no such verdict
        '{"verdict": "pass", "confidence": 250}',  # not a percentage either
        "I think the reply is fine.",  # no JSON at all
        '{"changes": []}',  # the required field is missing
    ],
)
def test_output_whose_meaning_is_not_clear_is_rejected(raw):
    schema = EditorOutput if "changes" in str(raw) else CriticOutput
    with pytest.raises(ValueError):
        read_output(schema, raw)


async def test_a_percentage_confidence_from_the_provider_is_read(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", {**PASS, "confidence": 100})
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1889."))
    assert result.degraded is None
    assert result.critiques[0].confidence == 1.0


# ── prompts that fit ─────────────────────────────────────────────────────────────────


async def test_a_long_history_is_trimmed_oldest_first_to_fit_the_context(provider, http_config):
    history = []
    for i in range(30):
        history += [user(f"Question {i}: " + "padding " * 60), assistant(f"Answer {i}.")]
    history.append(user("And my last question?"))
    provider.script("planner", plan("coherence"))
    provider.script("coherence", PASS)
    config = http_config(critics=["coherence"], context_tokens=2048)
    async with Refiner(config) as refiner:
        result = await refiner.arefine({"messages": history, "draft": "Sure."})
    assert result.degraded is None
    [call] = provider.calls_for("coherence")
    system, prompt = call.messages[0]["content"], call.messages[1]["content"]
    assert (len(system) + len(prompt)) / 3 < 2048 - 512  # within the budget, by the estimate
    assert "Question 0:" not in prompt  # the oldest went first
    assert "And my last question?" in prompt  # the user's last message never goes
    assert "<reply>\nSure.\n</reply>" in prompt  # nor the reply under review


async def test_a_prompt_that_cannot_fit_degrades_that_agent_and_is_not_sent(provider, http_config):
    provider.script("planner", plan("factuality"))
    config = http_config(critics=["factuality"], context_tokens=1024)
    async with Refiner(config) as refiner:
        result = await refiner.arefine(request(draft="The tower. " * 2000))
    [failure] = [d for d in result.degraded or [] if d.step == "factuality"]
    assert "does not fit the context window" in failure.reason
    assert provider.calls_for("factuality") == []
    assert result.reply == result.draft


async def test_the_context_window_a_server_names_in_its_error_is_learned(provider, http_config):
    def small_window(call: RecordedCall):
        size = sum(len(str(m.get("content"))) for m in call.messages)
        if size > 6000:
            return Fail(400, "This model's maximum context length is 2048 tokens.")
        return None

    history = []
    for i in range(20):
        history += [user(f"Question {i}: " + "padding " * 60), assistant(f"Answer {i}.")]
    history.append(user("And my last question?"))
    provider.script("planner", plan("coherence"))
    provider.set_default("coherence", small_window)
    async with Refiner(http_config(critics=["coherence"])) as refiner:
        result = await refiner.arefine({"messages": history, "draft": "Sure."})
    assert result.degraded is None
    assert known_endpoint(provider.base_url, "gpt-4o-mini").reported_context == 2048


# ── serial servers, timeouts, retries ────────────────────────────────────────────────


async def test_a_serial_endpoint_gets_one_call_at_a_time_and_timeouts_count_from_sending(
    provider, http_config
):
    provider.latency_s = 1.0
    provider.script("planner", plan(*CRITIC_AGENTS))
    # Three calls queued behind each other take 3 s; each is still within its 2.5 s.
    config = http_config(critics=list(CRITIC_AGENTS), provider_concurrency=1, timeout_s=2.5)
    async with Refiner(config) as refiner:
        started = time.perf_counter()
        result = await refiner.arefine(request(draft="It was finished in 1889."))
        took = time.perf_counter() - started
    assert result.degraded is None
    assert provider.max_in_flight() == 1
    assert took >= 3 * 1.0


@pytest.mark.parametrize(("owned_by", "cap"), [("me", 1024), ("redraft", None)])
async def test_output_is_capped_on_a_one_at_a_time_server_only(
    provider, http_config, provider_path, owned_by, cap
):
    """llama-cpp-python's server writes until its window is full when no limit is sent; a small
    model that loops then holds every queued call for minutes. Capped at the room the prompt
    budget leaves (a quarter of 4096); other endpoints get no limit they did not ask for. A
    user's own chat model (LangChain's path) keeps the limit it was built with."""
    cap = cap if provider_path == "direct" else None
    provider.owned_by = owned_by
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script("editor", {"changes": [], "reply": "It was finished in 1889."})
    async with Refiner(http_config(critics=["factuality"], context_tokens=4096)) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1925."))
    assert result.degraded is None
    assert {c.body.get("max_tokens") for c in provider.calls} == {cap}


async def test_a_retried_call_is_counted_and_a_hung_one_names_the_endpoint(provider, http_config):
    provider.script("planner", plan("factuality", "coherence"))
    provider.script("factuality", Fail(503, "busy"), PASS)
    provider.script("coherence", Fault("hang"), Fault("hang"))
    config = http_config(critics=["factuality", "coherence"], max_retries=1, timeout_s=0.5)
    async with Refiner(config) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1889."))
    usage = result.usage.by_agent
    assert (usage["factuality"].calls, usage["factuality"].retries) == (2, 1)
    assert (usage["coherence"].calls, usage["coherence"].failed_calls) == (2, 2)
    [hung] = [d for d in result.degraded or [] if d.step == "coherence"]
    assert provider.base_url in hung.reason and "within 0.5 s" in hung.reason


# ── fixes small models lose ──────────────────────────────────────────────────────────

SENSITIVE = "I'm thinking of putting all my savings into crypto this week. Should I?"
RISKY = "Absolutely, go all in!"


async def test_a_sensitive_turn_whose_safety_check_fails_never_ships_the_draft(
    provider, http_config, local_embeddings
):
    provider.set_default("safety", "I cannot produce JSON right now.")  # no mode parses
    copied = {"changes": [{"aspect": "safety", "change": "care"}], "reply": RISKY}
    provider.set_default(
        "editor", lambda call: copied if (call.tools or call.response_format) else RISKY
    )
    async with Refiner(http_config(planner="router")) as refiner:
        result = await refiner.arefine({"messages": [user(SENSITIVE)], "draft": RISKY})
    assert result.plan.sensitive
    safety = next(c for c in result.critiques if c.aspect == "safety")
    assert safety.verdict == "revise" and safety.confidence == 0.0  # the cautious fallback
    assert result.reply != RISKY and CAUTION in result.reply and result.changed
    assert any(d.step == "merge" and "unchanged" in d.reason for d in result.degraded or [])


async def test_an_editor_that_returns_the_reply_unchanged_is_asked_again_then_degraded(
    provider, http_config
):
    """An issue about the whole reply (no span): asked again for the whole reply, as text."""
    draft = "The tower was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("", "say it was finished in 1889"))
    copied = {"changes": [{"aspect": "factuality", "change": "fixed the year"}], "reply": draft}
    provider.script("editor", copied, draft)  # asked again for text only: the same text
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    _, second = provider.calls_for("editor")
    assert "exactly as it was" in second.messages[1]["content"]
    assert not (second.tools or second.response_format)
    assert result.reply == draft and not result.changed
    assert not any(c.change == "fixed the year" for c in result.changes)  # no claimed edit
    [failure] = [d for d in result.degraded or [] if d.step == "merge"]
    assert "unchanged" in failure.reason


DRAFT = "The tower is in Paris. It was finished in 1925, after two years of work! Visit it."


async def test_an_unchanged_reply_is_edited_sentence_by_sentence_where_the_issues_quote_it(
    provider, http_config
):
    """Qwen2.5-0.5B returned the reply unchanged in JSON and as text, for one clean critique;
    asked to rewrite only the sentence the issue quotes, it can. The rest stays as it was."""
    provider.script("planner", plan("factuality", "coherence"))
    provider.script("factuality", revise("finished in 1925", "finished in 1889"))
    provider.script("coherence", revise("'visit IT.'", "end with the opening hours"))
    provider.script("editor", {"changes": [], "reply": DRAFT})

    def sentence_edit(call: RecordedCall) -> str:
        prompt = call.messages[1]["content"]
        assert not (call.tools or call.response_format)
        assert "<critique" in prompt and "The tower is in Paris." not in prompt
        if "1925" in prompt:
            return '"It was finished in 1889, after two years of work!"'
        return "<reply>\nVisit it: it opens at 9:00.\n</reply>"

    provider.set_default("editor", sentence_edit)
    config = http_config(critics=["factuality", "coherence"])
    async with Refiner(config) as refiner:
        result = await refiner.arefine(request(draft=DRAFT))
    assert result.reply == (
        "The tower is in Paris. It was finished in 1889, after two years of work! "
        "Visit it: it opens at 9:00."
    )
    assert result.degraded is None and result.changed
    assert {c.aspect for c in result.changes} == {"factuality", "coherence"}
    assert len(provider.calls_for("editor")) == 3  # the JSON rewrite, then one per sentence


async def test_a_sentence_edit_that_changes_nothing_or_runs_away_is_degraded(provider, http_config):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script("editor", {"changes": [], "reply": DRAFT}, "x" * 2000)
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=DRAFT))
    assert result.reply == DRAFT and not result.changed
    [failure] = [d for d in result.degraded or [] if d.step == "merge"]
    assert "unchanged" in failure.reason


async def test_a_fix_that_restates_its_span_is_no_issue_and_costs_no_editor_call(
    provider, http_config
):
    """Qwen2.5-0.5B: fix "The text should be '<the span>'"; an editor asked to apply it returns
    the reply as it was, and the turn used to degrade."""
    draft = "It was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise(draft, f"The text should be '{draft}'"))
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    assert result.degraded is None and result.reply == draft
    assert [c.verdict for c in result.critiques] == ["pass"]
    assert provider.calls_for("editor") == []


LEAKED = (
    "The tower was finished in 1889.\n<critique aspect=\"factuality\">\n- span: '1925'\n"
    "  problem: the passage says 1889\n</critique>"
)


async def test_an_editor_that_copies_a_critique_into_the_reply_is_asked_again(
    provider, http_config
):
    """Seen on Qwen2.5-Coder-1.5B: the rewrite ended with the critique block it was given. The
    reply never ships the prompt's blocks: asked once more for text only, the clean text is used."""
    draft = "The tower was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("", "say it was finished in 1889"))
    provider.script("editor", {"changes": [], "reply": LEAKED}, "The tower was finished in 1889.")
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    _, second = provider.calls_for("editor")
    assert "copied parts of the blocks above" in second.messages[1]["content"]
    assert result.reply == "The tower was finished in 1889." and result.degraded is None


async def test_a_copied_critique_where_the_issue_quotes_the_reply_is_edited_by_sentence(
    provider, http_config
):
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script("editor", {"changes": [], "reply": LEAKED}, "It was finished in 1889.")
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft="It was finished in 1925."))
    assert result.reply == "It was finished in 1889." and result.degraded is None


async def test_an_editor_that_copies_its_prompt_twice_is_degraded_and_the_draft_stands(
    provider, http_config
):
    draft = "The tower was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script("editor", {"changes": [], "reply": LEAKED}, LEAKED)
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    assert result.reply == draft and "<critique" not in result.reply and not result.changed
    [failure] = [d for d in result.degraded or [] if d.step == "merge"]
    assert "copied its prompt into the reply" in failure.reason


async def test_a_sequential_rewrite_that_copies_its_prompt_goes_to_the_editor(
    provider, http_config
):
    draft = "The tower was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality_refiner", {**revise("1925", "1889"), "reply": LEAKED})
    provider.script("editor", {"changes": [], "reply": "The tower was finished in 1889."})
    config = http_config(critics=["factuality"], strategy="sequential")
    async with Refiner(config) as refiner:
        result = await refiner.arefine(request(draft=draft))
    assert result.reply == "The tower was finished in 1889." and result.degraded is None
    assert len(provider.calls_for("editor")) == 1


async def test_a_rewrite_wrapped_in_a_reply_block_is_unwrapped(provider, http_config):
    """Qwen2.5-0.5B answered `<reply>…</reply>`, as its prompt showed the reply: the text is
    used."""
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    wrapped = "<reply>\nThe tower was finished in 1889.\n</reply>"
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "year"}], "reply": wrapped}
    )
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft="The tower was finished in 1925."))
    assert result.reply == "The tower was finished in 1889." and result.degraded is None


async def test_markup_the_reply_had_itself_is_not_a_leak(provider, http_config):
    draft = "Wrap the answer in <reply> tags; the tower was finished in 1925."
    fixed = "Wrap the answer in <reply> tags; the tower was finished in 1889."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "year"}], "reply": fixed}
    )
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    assert result.reply == fixed and result.degraded is None
    assert len(provider.calls_for("editor")) == 1


async def test_an_editor_that_copies_once_then_edits_is_used(provider, http_config):
    draft = "The tower was finished in 1925."
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("1925", "1889"))
    provider.script("editor", {"changes": [], "reply": draft}, draft[:-5] + "1889.")
    async with Refiner(http_config(critics=["factuality"])) as refiner:
        result = await refiner.arefine(request(draft=draft))
    assert result.reply.endswith("1889.") and result.degraded is None
    assert [c.aspect for c in result.changes] == ["factuality"]
