"""`redraft chat`, typed into through `input_fn`, on the real Refiner with a scripted model."""

from __future__ import annotations

import pytest
from rich.console import Console

from redraft.cli.chat import default_config, run_chat
from redraft.config import RefinerConfig
from redraft.testing import ScriptedChatModel

PASSAGE = "The Louvre opened as a museum in 1793."
QUESTION = "When did the Louvre open?"


class Chat:
    """A finished session: what was printed, and what the model was asked."""

    def __init__(self, code: int, console: Console, model: ScriptedChatModel):
        self.code = code
        self.model = model
        self.text = " ".join(console.export_text().replace("│", " ").split())

    def agents(self) -> list[str]:
        return [call.agent for call in self.model.calls]

    def draft_prompt(self, n: int) -> str:
        return str(self.model.calls_for("responder")[n].messages)


@pytest.fixture
def model() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture
def chat(model):
    def run(*lines: str) -> Chat:
        """Type `lines`, then end input (EOF) as a closed terminal would."""
        typed = iter(lines)

        def input_fn(prompt: str) -> str:
            try:
                return next(typed)
            except StopIteration:
                raise EOFError from None

        console = Console(record=True, width=120)
        config = RefinerConfig(
            checkpointer="memory", log_level="WARNING", planner="llm", memory_learn=False
        )
        code = run_chat(config, model=model, console=console, input_fn=input_fn)
        return Chat(code, console, model)

    return run


def script_fact_fix(model: ScriptedChatModel) -> None:
    model.script("responder", "The Louvre opened as a museum in 1893.")
    model.script("planner", {"steps": [{"aspect": "factuality", "reason": "It states a date."}]})
    model.script(
        "factuality",
        {
            "verdict": "revise",
            "issues": [{"span": "in 1893", "problem": "p1 says 1793.", "fix": "in 1793"}],
            "evidence": ["p1"],
        },
    )
    model.script(
        "editor",
        {
            "changes": [{"aspect": "factuality", "change": "1893 → 1793"}],
            "reply": "The Louvre opened as a museum in 1793.",
        },
    )


def test_a_turn_shows_how_the_reply_was_made(chat, model):
    script_fact_fix(model)

    session = chat(f"/knowledge {PASSAGE}", QUESTION, "/quit")

    assert session.code == 0
    assert session.agents() == ["responder", "planner", "factuality", "editor"]
    for shown in (
        "draft",
        "The Louvre opened as a museum in 1893.",  # the draft
        "factuality It states a date.",  # the plan and its reason
        "revise “in 1893” p1 says 1793.",  # the critique
        "draft → reply",
        "Time per step",
        "LLM calls per agent",
    ):
        assert shown in session.text
    assert PASSAGE in str(session.model.calls_for("factuality")[0].messages)


def test_turns_build_one_conversation(chat):
    session = chat("My name is Ada.", "What is my name?")

    assert "My name is Ada." in session.draft_prompt(1)


def test_persona_facts_are_listed_sent_and_cleared(chat):
    session = chat(
        "/persona Is vegetarian.",
        "/persona Prefers short answers.",
        "/persona",
        "Dinner ideas?",
        "/persona clear",
        "/persona",
        "More ideas?",
    )

    assert "f1 Is vegetarian. f2 Prefers short answers." in session.text
    assert "Is vegetarian." in session.draft_prompt(0)
    assert "no persona facts yet" in session.text
    assert "Is vegetarian." not in session.draft_prompt(1)


def test_strategy_switch_keeps_the_thread(chat, model):
    model.set_default("planner", {"steps": [{"aspect": "coherence", "reason": "A follow-up."}]})

    session = chat("Hello there.", "/strategy sequential", "And now?", "/trace")

    assert "coherence_refiner" in session.agents()
    assert "Hello there." in session.draft_prompt(1)
    assert '"strategy": "sequential"' in session.text


def test_bad_strategy_lists_the_choices(chat):
    session = chat("/strategy fastest")

    assert "strategy is parallel; choose one of: parallel, sequential, self_refine, none" in (
        session.text
    )


def test_planner_all_checks_every_critic_without_a_planner_call(chat):
    session = chat("/planner all", "Hi")

    assert "planner" not in session.agents()
    assert {"factuality", "personalization", "coherence"} <= set(session.agents())


def test_trace_shows_the_last_result_as_json(chat):
    session = chat("/trace", "Hi", "/trace")

    assert "no turn yet" in session.text
    assert '"reply": "Scripted reply to:' in session.text
    assert '"thread_id": "chat-' in session.text


def test_reset_starts_a_new_thread_and_keeps_the_persona(chat):
    session = chat("/persona Likes jazz.", "My name is Ada.", "/reset", "What is my name?")

    assert "new conversation (kept: persona facts 1, passages 0)" in session.text
    assert "My name is Ada." not in session.draft_prompt(1)
    assert "Likes jazz." in session.draft_prompt(1)


def test_unknown_command_shows_help(chat):
    session = chat("/frobnicate now")

    assert "unknown command /frobnicate" in session.text
    assert "/strategy <name>" in session.text
    assert session.agents() == []


def test_provider_error_is_one_red_line_and_the_chat_goes_on(chat, model):
    model.script("responder", ConnectionError("provider unreachable"))

    session = chat("Hi", "Hi again")

    assert session.code == 0
    assert "✗ no draft could be written: provider unreachable" in session.text
    assert "Traceback" not in session.text
    assert session.agents().count("responder") == 2


def test_markup_in_replies_is_printed_as_written(chat, model):
    model.script("responder", "Use [bold]brackets[/bold] freely.")

    session = chat("Show me markup")

    assert "Use [bold]brackets[/bold] freely." in session.text


@pytest.mark.parametrize("interrupt", [EOFError, KeyboardInterrupt])
def test_eof_and_ctrl_c_leave_cleanly(model, interrupt):
    def input_fn(prompt: str) -> str:
        raise interrupt

    config = RefinerConfig(checkpointer="memory", log_level="WARNING")
    console = Console(record=True, width=120)

    assert run_chat(config, model=model, console=console, input_fn=input_fn) == 0


@pytest.fixture
def no_provider(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "REDRAFT_API_KEY",
        "REDRAFT_BASE_URL",
        "REDRAFT_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_without_a_provider_it_explains_how_to_get_one(no_provider):
    console = Console(record=True, width=120)

    def input_fn(prompt: str) -> str:
        raise AssertionError("no chat should start without a model")

    assert run_chat(RefinerConfig(), console=console, input_fn=input_fn) == 1

    text = console.export_text()
    assert "export OPENAI_API_KEY=" in text
    assert "OPENAI_BASE_URL=http://localhost:11434/v1 REDRAFT_MODEL=llama3.1" in text
    assert "vLLM" in text and "llama.cpp" in text
    assert "redraft demo" in text
    assert "Traceback" not in text


def test_default_config_keeps_threads_in_memory_and_logs_quiet(no_provider, monkeypatch):
    monkeypatch.delenv("REDRAFT_CHECKPOINTER", raising=False)
    monkeypatch.delenv("REDRAFT_LOG_LEVEL", raising=False)
    assert (default_config().checkpointer, default_config().log_level) == ("memory", "WARNING")

    monkeypatch.setenv("REDRAFT_LOG_LEVEL", "DEBUG")
    assert default_config().log_level == "DEBUG"


def test_a_question_turn_says_asked_not_no_change(chat, model):
    model.script("responder", "Here is a generic plan.")
    model.script("planner", {"steps": [{"aspect": "safety", "reason": "Money trouble."}]})
    model.script(
        "safety",
        {
            "verdict": "ask",
            "issues": [],
            "confidence": 0.9,
            "evidence": [],
            "domain": "Career",
            "risk": "high",
            "completeness": 1,
            "ask_attribute": "Emotional State",
            "question": "How are you feeling right now?",
        },
    )
    session = chat("I lost my job today and can't pay rent. What should I do?")
    assert "How are you feeling right now?" in session.text
    assert "Asked" in session.text
    assert "No change" not in session.text
