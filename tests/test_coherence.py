"""The coherence critic holds the reply to the whole conversation, over the real HTTP path:
contradictions with earlier assistant turns are quoted from the turn itself (a quote that is in
no assistant turn is dropped, with its issue), and the editor is told what was said before."""

from __future__ import annotations

from redraft import Refiner
from tests.conftest import PASS, assistant, user

EARLIER = "No. The museum is closed on Mondays, but it opens at 10:00 from Tuesday to Sunday."
HISTORY = [
    user("Is the Harbor Street museum open on Mondays?"),
    assistant(EARLIER),
    user("Great. Can I book a guided tour for next Monday?"),
]
DRAFT = "Yes, guided tours run every Monday at 11:00, as the museum is open all week."
SPAN = "as the museum is open all week"


def coherence(*contradictions: dict, issues: list | None = None, verdict="revise") -> dict:
    return {
        "contradictions": list(contradictions),
        "verdict": verdict,
        "issues": issues or [],
        "confidence": 0.8,
        "evidence": [],
    }


def contradiction(turn: int, quote: str, span: str = SPAN) -> dict:
    return {"turn": turn, "quote": quote, "span": span}


def issue(span: str = SPAN, problem: str = "the museum was said to close on Mondays") -> dict:
    return {"span": span, "problem": problem, "fix": "say that tours run Tuesday to Sunday"}


def config(http_config):
    return http_config(planner="all", critics=["coherence"])


def prompt(provider, agent: str, index: int = 0) -> str:
    return str(provider.calls_for(agent)[index].messages[1]["content"])


async def test_a_contradiction_with_an_earlier_turn_is_caught_and_quoted(provider, http_config):
    provider.script("responder", EARLIER, DRAFT)
    provider.script(
        "coherence",
        PASS,
        coherence(contradiction(2, "The museum is closed on Mondays"), issues=[issue()]),
    )
    fixed = "Sorry, the museum is closed on Mondays; tours run Tuesday to Sunday."
    provider.script(
        "editor", {"changes": [{"aspect": "coherence", "change": "days"}], "reply": fixed}
    )
    async with Refiner(config(http_config)) as refiner:
        await refiner.arefine({"messages": HISTORY[:1], "thread_id": "museum"})
        result = await refiner.arefine({"messages": HISTORY[2:], "thread_id": "museum"})

    seen = prompt(provider, "coherence", 1)
    assert f'<turn n="2" role="assistant">\n{EARLIER}\n</turn>' in seen
    assert f"<reply>\n{DRAFT}\n</reply>" in seen
    critique = result.critiques[0]
    assert critique.verdict == "revise"
    assert critique.evidence == ['turn 2: "The museum is closed on Mondays"']
    assert critique.issues[0].problem == (
        'the museum was said to close on Mondays (turn 2 said: "The museum is closed on Mondays")'
    )
    assert 'turn 2 said: "The museum is closed on Mondays"' in prompt(provider, "editor")
    assert result.reply == fixed


async def test_the_turn_is_found_from_the_quote(provider, http_config):
    # The model names the user's turn (3); the quote is from the assistant's turn 2.
    provider.script(
        "coherence", coherence(contradiction(3, "opens at 10:00 from Tuesday"), issues=[issue()])
    )
    provider.script("editor", {"changes": [], "reply": "fixed"})
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": HISTORY, "draft": DRAFT})
    assert result.critiques[0].evidence == ['turn 2: "opens at 10:00 from Tuesday"']


async def test_an_invented_quote_is_dropped_with_its_issue(provider, http_config):
    provider.script(
        "coherence",
        coherence(contradiction(2, "The museum is open every day of the week"), issues=[issue()]),
    )
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": HISTORY, "draft": DRAFT})
    critique = result.critiques[0]
    assert critique.verdict == "pass" and critique.issues == [] and critique.evidence == []
    assert provider.calls_for("editor") == []
    assert result.reply == DRAFT


async def test_a_quoted_contradiction_without_an_issue_still_gets_fixed(provider, http_config):
    provider.script(
        "coherence",
        coherence(contradiction(2, "the museum is closed on mondays"), verdict="pass"),
    )
    provider.script("editor", {"changes": [], "reply": "fixed"})
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": HISTORY, "draft": DRAFT})
    [added] = result.critiques[0].issues
    assert added.span == SPAN
    assert added.problem == (
        'contradicts what the assistant said earlier (turn 2 said: "the museum is closed on '
        'mondays")'
    )
    assert added.fix == "keep to what turn 2 said, or say openly that this corrects it"
    assert result.reply == "fixed"


async def test_other_issues_pass_through(provider, http_config):
    unanswered = {
        "span": "Yes, guided tours run every Monday at 11:00",
        "problem": "the user also asked how to book; the reply does not say",
        "fix": "add that tours are booked at the front desk",
    }
    provider.script("coherence", coherence(issues=[unanswered]))
    provider.script("editor", {"changes": [], "reply": "fixed"})
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": HISTORY, "draft": DRAFT})
    assert result.critiques[0].issues[0].problem == unanswered["problem"]
    assert result.reply == "fixed"


async def test_the_critic_reads_the_whole_conversation(provider, http_config):
    long = [user("My name is Ada and I keep bees.")]
    for i in range(30):
        long += [assistant(f"Noted, answer {i}."), user(f"Question {i}?")]
    provider.script("coherence", PASS)
    async with Refiner(config(http_config)) as refiner:
        await refiner.arefine({"messages": long, "draft": "Sure."})
    seen = prompt(provider, "coherence")
    assert '<turn n="1" role="user">\nMy name is Ada and I keep bees.' in seen
    assert '<turn n="61" role="user">\nQuestion 29?' in seen


async def test_a_very_long_conversation_keeps_the_latest_turns(provider, http_config):
    long = []
    for i in range(40):
        long += [user(f"Question {i}: " + "words " * 200), assistant(f"Answer {i}.")]
    long.append(user("And the last question?"))
    provider.script("coherence", PASS)
    async with Refiner(config(http_config)) as refiner:
        await refiner.arefine({"messages": long, "draft": "Sure."})
    seen = prompt(provider, "coherence")
    assert "Question 0:" not in seen
    assert '<turn n="81" role="user">\nAnd the last question?' in seen
    assert len(seen) < 30_000
