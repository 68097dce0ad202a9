"""Hostile input, round 2 (issue 18): numbers and keys JSON allows but redraft cannot take,
per-field limits on every untrusted text, identifiers with control characters, and error
bodies of bounded size. In-process: the ASGI app with Starlette's TestClient; the turns that
must not start would fail on the unreachable provider anyway."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from redraft import Refiner, RefinerConfig
from redraft.config import ServerConfig
from redraft.parsing import JSONLimitError, parse_json
from redraft.server.app import create_app
from tests.conftest import user


@pytest.fixture
def app_client(tmp_path):
    def make(**overrides) -> TestClient:
        values = {
            "api_key": "k",
            "base_url": "http://127.0.0.1:9",
            "home": tmp_path / "home",
            "checkpointer": "memory",
            "planner": "llm",
            **overrides,
        }
        config = RefinerConfig(**values)
        return TestClient(create_app(config, ServerConfig()), raise_server_exceptions=False)

    return make


def post(client: TestClient, body: bytes | dict):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
    )


def request_with(value: str) -> bytes:
    """A valid request body with `value` (raw JSON text) in its `persona` list."""
    return (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "persona": ['
        + value.encode()
        + b"]}"
    )


# ── item 3: big integers, non-finite floats, duplicate keys ────────────────────────────


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("9" * 5000, "a number with 5000 digits"),
        ("-" + "9" * 5000, "a number with 5001 digits"),
        ("1e999", "the number 1e999 is out of range"),
        ("-1e999", "out of range"),
        ("0." + "1" * 200, "a number of 202 characters"),
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_numbers_and_keys_json_cannot_carry_are_a_400(app_client, raw, words):
    response = post(app_client(), request_with(raw))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("invalid JSON: ") and words in error["message"]


def test_a_duplicate_top_level_field_is_a_400(app_client):
    body = (
        b'{"model": "m", "user": "ana", "user": "bob", '
        b'"messages": [{"role": "user", "content": "hi"}]}'
    )
    response = post(app_client(), body)
    assert response.status_code == 400
    assert "duplicate key 'user'" in response.json()["error"]["message"]


def test_a_duplicate_key_is_named_short_and_escaped():
    with pytest.raises(JSONLimitError) as info:
        parse_json('{"\\u001b[31m' + "k" * 100 + '": 1, "\\u001b[31m' + "k" * 100 + '": 2}')
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b" in message and len(message) < 100


def test_ordinary_numbers_still_parse():
    assert parse_json('{"t": 0.2, "n": -12, "e": 1.5e3, "big": ' + "9" * 100 + "}") == {
        "t": 0.2,
        "n": -12,
        "e": 1500.0,
        "big": int("9" * 100),
    }


@pytest.mark.parametrize("raw", ["9" * 5000, "1e999", '{"a": 1, "a": 2}'])
def test_the_cli_refuses_them_in_one_line(raw, tmp_path):
    from tests.test_bad_input import run_cli

    done = run_cli("refine", stdin=request_with(raw).decode())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("redraft: invalid JSON: ") and done.stderr.count("\n") == 1


# Number literals and keys as an attacker writes them: long, signed, exponents, repeated keys.
number_literals = st.one_of(
    st.integers().map(str),
    st.from_regex(r"-?[1-9][0-9]{0,6000}", fullmatch=True),
    st.from_regex(r"-?(0|[1-9][0-9]{0,400})\.[0-9]{1,400}([eE][+-]?[0-9]{1,6})?", fullmatch=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e-999", "1E+400"]),
)
objects = st.lists(st.tuples(st.sampled_from(["a", "b", "user"]), number_literals), max_size=4)


@settings(max_examples=150, deadline=None)
@given(objects)
def test_fuzz_numbers_and_keys_parse_or_are_refused_by_name(pairs):
    text = "{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}"
    try:
        parsed = parse_json(text)
    except JSONLimitError as exc:
        assert str(exc).startswith("invalid JSON: ") and len(str(exc)) < 120
        return
    assert len(parsed) == len(pairs)  # no key silently dropped
    for value in parsed.values():
        assert not isinstance(value, float) or (value == value and abs(value) != float("inf"))


@settings(max_examples=40, deadline=None)
@given(number_literals)
def test_fuzz_numbers_through_the_server_are_never_a_5xx(literal):
    client = TestClient(create_app(FUZZ_CONFIG, ServerConfig()), raise_server_exceptions=False)
    response = post(client, request_with(literal))
    assert response.status_code == 400
    assert response.json()["error"]["message"]


FUZZ_CONFIG = RefinerConfig(
    api_key="k", base_url="http://127.0.0.1:9", checkpointer="memory", planner="llm"
)


# ── item 4: a size for every untrusted text; a cap on what an upstream reply may be ──────


def chat(**fields) -> dict:
    return {"model": "m", "messages": [user("hi")], **fields}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"knowledge": ["k" * 20_001]}, "knowledge", "passage 0 has 20001 characters"),
        ({"knowledge": ["k"] * 51}, "knowledge", "at most 50 passages"),
        ({"persona": ["f", "f" * 2_001]}, "persona", "fact 1 has 2001 characters"),
        ({"persona": ["f"] * 201}, "persona", "at most 200 facts"),
        ({"draft": "d" * 64_001}, "draft", "the draft has 64001 characters"),
        (
            {"knowledge": ["k" * 20_000] * 40, "messages": [user("m" * 60_000)] * 4},
            None,
            "have 1040000 characters together; at most 1000000",
        ),
    ],
)
def test_an_oversized_text_is_a_400_naming_its_field(app_client, fields, param, words):
    response = post(app_client(), chat(**fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    if param:
        assert error["message"].startswith(f"{param}: ")


def test_text_limits_are_configurable(app_client):
    client = app_client(max_passage_chars=10, max_persona_facts=1, max_request_chars=100)
    response = post(client, chat(knowledge=["k" * 11]))
    assert "at most 10 are accepted" in response.json()["error"]["message"]
    response = post(client, chat(persona=["a", "b"]))
    assert "at most 1 facts" in response.json()["error"]["message"]
    response = post(client, chat(draft="d" * 99))
    assert "at most 100 are accepted" in response.json()["error"]["message"]


def test_text_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REDRAFT_MAX_DRAFT_CHARS", "5")
    refiner = Refiner(RefinerConfig())
    with pytest.raises(ValueError, match="at most 5 are accepted"):
        refiner.validate({"messages": [user("hi")], "draft": "six ch"})


async def test_a_draft_longer_than_max_reply_chars_fails_the_turn(provider, http_config):
    from redraft.errors import RefineError

    provider.script("responder", "word " * 300)
    refiner = Refiner(http_config(max_reply_chars=1_000, strategy="none"))
    try:
        with pytest.raises(RefineError) as info:
            await refiner.arefine({"messages": [user("hi")]})
    finally:
        await refiner.aclose()
    assert info.value.step == "draft" and "1499 characters; at most 1000" in str(info.value)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_rewrite_longer_than_max_reply_chars_keeps_the_draft(provider, http_config, stream):
    from redraft.refiner import ReplyToken, TurnDone
    from tests.conftest import plan, revise

    provider.script("planner", plan("coherence"))
    provider.script("coherence", revise("draft", "better"))
    provider.script("editor", {"changes": [], "reply": "long " * 300})
    refiner = Refiner(http_config(max_reply_chars=1_000))
    request = {"messages": [user("hi")], "draft": "The draft reply."}
    try:
        if stream:
            shown, result = "", None
            async for event in refiner.astream(request, reply_tokens=True):
                if isinstance(event, ReplyToken):
                    shown = "" if event.reset else shown + event.text
                elif isinstance(event, TurnDone):
                    result = event.result
        else:
            result = await refiner.arefine(request)
    finally:
        await refiner.aclose()
    assert result.reply == "The draft reply."
    assert [d.step for d in result.degraded] == ["merge"]
    assert "rewrite has 1500 characters; at most 1000" in result.degraded[0].reason


# ── item 7: identifiers with control characters: the same 400 on every backend ──────────


@pytest.mark.parametrize("field", ["user", "thread_id"])
@pytest.mark.parametrize("value", ["ana\x00", "\x00", "a\x1b[2Jb", "tab\there", "del\x7f"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_identifier_with_control_characters_is_a_400(app_client, field, value, backend, request):
    overrides = {"checkpointer": backend}
    if backend == "postgres":
        overrides["database_url"] = request.getfixturevalue("database_url")
    body = {**chat(thread_id="t1"), field: value}
    with app_client(**overrides) as client:
        response = post(client, json.dumps(body).encode())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["message"].startswith(f"{field}: ") and "control characters" in error["message"]
    assert "psycopg" not in response.text and "\\u0000" not in error["message"]


def test_the_persona_commands_refuse_such_a_user_id(capsys):
    from redraft.cli import main

    assert main(["persona", "show", "ana\x1b[2J"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert (
        err == "redraft: the user id must not contain control characters (U+001B at position 3)\n"
    )


# ── item 5: error bodies of bounded size ─────────────────────────────────────────────


def test_100k_bad_messages_give_a_small_error_body(app_client):
    body = {"model": "m", "messages": [{"role": "user", "content": ""}] * 100_000}
    response = post(app_client(max_messages=200_000), body)
    assert response.status_code == 400
    assert len(response.content) < 2_000
    error = response.json()["error"]
    assert error["param"].startswith("messages.0")
    assert error["message"].endswith("; and 99995 more")


def test_long_field_names_are_cut_in_errors(app_client):
    response = post(app_client(), chat(**{"x" * 10_000: 1}))
    assert response.status_code == 400 and len(response.content) < 1_000
    assert "x" * 40 + "…: unrecognized request argument" in response.json()["error"]["message"]


def test_the_cli_error_for_100k_bad_messages_is_one_short_line():
    from tests.test_bad_input import run_cli

    stdin = json.dumps({"messages": [{"role": "user", "content": ""}] * 100_000})
    done = run_cli("refine", stdin=stdin)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and len(done.stderr) < 1_000
