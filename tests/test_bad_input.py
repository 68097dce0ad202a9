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
        [sys.executable, "-m", "redraft", *args],
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
        [sys.executable, "-m", "redraft", "refine"],
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


# ── hostile input and a hostile environment: still one line ──────────────────────────

DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 50_000 + "1" + "}" * 50_000


@pytest.mark.parametrize("stdin", [DEEP_LIST, DEEP_OBJECT], ids=["list", "object"])
def test_cli_deeply_nested_json_is_one_line_and_exit_2(stdin):
    done = run_cli("refine", stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "redraft: invalid JSON: nested too deeply\n"


def test_cli_deeply_nested_json_file(tmp_path, capsys):
    from redraft.cli import main

    path = tmp_path / "request.json"
    path.write_text('{"messages": ' + DEEP_LIST + "}")
    assert main(["refine", str(path)]) == 2
    assert capsys.readouterr().err == "redraft: invalid JSON: nested too deeply\n"


def test_persona_import_of_deeply_nested_yaml_names_the_file(tmp_path, capsys):
    from redraft.cli import main

    path = tmp_path / "persona.yaml"
    path.write_text("facts: " + DEEP_LIST)
    assert main(["persona", "import", "--user", "ana", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"redraft: {path}: invalid YAML: nested too deeply\n"


def failing_command(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/srv/redraft"),
            "/srv/redraft: Permission denied",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "/gone/threads.sqlite"),
            "/gone/threads.sqlite: No such file or directory",
        ),
        (OSError(28, "No space left on device"), "No space left on device"),
    ],
)
def test_an_os_error_of_any_command_is_one_line_and_exit_1(monkeypatch, capsys, exc, line):
    from redraft import cli

    monkeypatch.setattr(cli, "cmd_graph", failing_command(exc))
    assert cli.main(["graph"]) == 1
    assert capsys.readouterr().err == f"redraft: {line}\n"


def test_a_bug_is_one_line_and_debug_shows_its_traceback(monkeypatch, capsys):
    from redraft import cli

    monkeypatch.setattr(cli, "cmd_graph", failing_command(TypeError("boom\nsecond line")))
    monkeypatch.delenv("REDRAFT_LOG_LEVEL", raising=False)
    assert cli.main(["graph"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "redraft: internal error: TypeError: boom second line "
        "(REDRAFT_LOG_LEVEL=DEBUG shows the traceback)\n"
    )
    monkeypatch.setenv("REDRAFT_LOG_LEVEL", "debug")
    assert cli.main(["graph"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "TypeError: boom" in err
    assert err.splitlines()[-1] == "redraft: internal error: TypeError: boom second line"


def test_an_unusable_redraft_home_is_one_line_naming_it(tmp_path):
    import os

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {
        **os.environ,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": "http://127.0.0.1:9",
        "REDRAFT_HOME": str(blocker / "home"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "redraft", "refine"],
        input=json.dumps({"messages": [user("hello")], "thread_id": "t"}),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker / "home") in lines[0]
