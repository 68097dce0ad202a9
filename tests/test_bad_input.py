"""Bad requests fail validation naming the field; the CLI prints one line and exits 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from redraft import Refiner, RefinerConfig, RefineRequest
from tests.conftest import user


def error_fields(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "", "user message"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role", "user"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content", "empty"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages.0.content", "empty"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages.0.content", "string"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content",
            "string",
        ),
        ({"messages": [user("x" * 64_001)]}, "messages", "64000"),
        ({"messages": [user("hi")] * 501}, "messages", "500"),
        ({"messages": [user("hi")], "draft": " "}, "draft", "empty"),
        ({"messages": [user("hi")], "colour": "red"}, "colour", "Extra"),
    ],
)
def test_invalid_requests_name_the_field(payload, field, words):
    with pytest.raises(ValidationError) as info:
        Refiner(RefinerConfig()).validate(payload)
    assert field in error_fields(info.value)
    assert words.lower() in str(info.value).lower()


def test_limits_are_configurable():
    refiner = Refiner(RefinerConfig(max_messages=2, max_message_chars=10))
    with pytest.raises(ValidationError, match="at most 2 messages"):
        refiner.validate({"messages": [user("a"), user("b"), user("c")]})
    with pytest.raises(ValidationError, match="at most 10 are accepted"):
        refiner.validate({"messages": [user("x" * 11)]})
    assert refiner.validate({"messages": [user("x" * 10)]}).messages[0].content == "x" * 10


def test_limits_apply_to_prebuilt_requests():
    refiner = Refiner(RefinerConfig(max_messages=1))
    request = RefineRequest(messages=[user("a"), user("b")])
    with pytest.raises(ValidationError):
        refiner.validate(request)


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "redraft.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("stdin", "words"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}), "messages.0.role"),
        (json.dumps({"messages": [{"role": "assistant", "content": "x"}]}), "user message"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(stdin, words):
    done = run_cli("refine", stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_missing_file():
    done = run_cli("refine", "/nonexistent/request.json")
    assert done.returncode == 2
    assert "cannot read /nonexistent/request.json" in done.stderr


def test_cli_without_provider_reports_a_clear_error():
    done = run_cli("refine", stdin=json.dumps({"messages": [user("hello")]}))
    assert done.returncode == 1
    assert "OPENAI_API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_cli_refines_over_http(provider, tmp_path):
    import os

    provider.script("planner", {"steps": []})
    env = {
        **os.environ,
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "k",
        "REDRAFT_HOME": str(tmp_path),
        "REDRAFT_PLANNER": "llm",  # the planner is scripted above; the router has its own tests
    }
    done = subprocess.run(
        [sys.executable, "-m", "redraft.cli", "refine"],
        input=json.dumps({"messages": [user("hello")], "thread_id": "cli"}),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reply"] and result["plan"]["aspects"] == []
    assert result["usage"]["llm_calls"] == 2
