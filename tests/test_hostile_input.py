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
        config = RefinerConfig(
            api_key="k",
            base_url="http://127.0.0.1:9",
            home=tmp_path / "home",
            checkpointer="memory",
            planner="llm",
            **overrides,
        )
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
    body = b'{"model": "m", "user": "ana", "user": "bob", "messages": [{"role": "user", "content": "hi"}]}'
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
        assert not isinstance(value, float) or value == value and abs(value) != float("inf")


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
