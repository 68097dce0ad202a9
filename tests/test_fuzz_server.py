"""schemathesis against `redraft serve`: no 5xx, no crash, errors that name the field.

The request schema is the one the server publishes at /openapi.json (generated from the
models it validates with), tightened below where validators check more than the schema says.
Requests valid by it and requests that violate it (schemathesis' negative mode) go over HTTP to a
real `redraft serve` whose upstream is a FakeProvider.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from redraft.config import RefinerConfig
from redraft.server import create_app
from redraft.testing import FakeProvider
from tests.servers import redraft_serve, server_env


def openapi_document() -> dict:
    published = create_app(RefinerConfig(base_url="http://127.0.0.1:9/v1")).openapi()
    chat = published["components"]["schemas"]["ChatCompletionRequest"]
    body = {
        "type": "object",
        "properties": dict(chat["properties"]),
        "required": chat["required"],
        "additionalProperties": False,
    }
    # What the server accepts, stated in the schema, so that valid cases are valid turns (the
    # pydantic schemas leave these checks to validators).
    text = {"type": "string", "pattern": r"\S"}
    body["properties"].update(
        messages={
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant"]},
                    "content": text,
                },
                "required": ["role", "content"],
            },
            "contains": {"type": "object", "properties": {"role": {"const": "user"}}},
        },
        n={"enum": [1, None]},
        tools={"anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]},
        functions={"anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]},
        response_format={
            "anyOf": [
                {"type": "object", "properties": {"type": {"const": "text"}}},
                {"type": "null"},
            ]
        },
        user={"anyOf": [{**text, "maxLength": 256}, {"type": "null"}]},
        draft={"anyOf": [text, {"type": "null"}]},
    )
    error = {
        "description": "an OpenAI-style error",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type", "param", "code"],
                        }
                    },
                }
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "redraft", "version": "1"},
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {
                        "200": {"description": "a completion (or its chunks)"},
                        **{str(s): error for s in (400, 413, 415, 429)},
                    },
                }
            },
            "/v1/models": {"get": {"responses": {"200": {"description": "the models"}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "up"}}}},
        },
        "components": {"schemas": published["components"]["schemas"]},
    }


schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=60
)


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-serve")
    env = server_env(
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_API_KEY="upstream-key",
        REDRAFT_HOME=str(tmp / "home"),
        REDRAFT_PLANNER="all",
        REDRAFT_CRITICS="factuality,coherence",
        REDRAFT_MAX_RETRIES="0",
        REDRAFT_MEMORY="false",
    )
    with redraft_serve(env, tmp / "serve.log") as url:
        yield url


def errors_name_the_field(response) -> None:
    """A refused request says why in an OpenAI error object; a field's problem names it."""
    if response.status_code < 400:
        return
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if response.status_code == 400:
        named = error["param"] or re.match(r"^[\w.\-'\[\] ]+: ", error["message"])
        whole_body = re.search(r"\bbody\b|JSON", error["message"])  # not JSON, not UTF-8, ...
        assert named or whole_body, error


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_the_server_answers_everything_without_a_5xx(case, server):
    response = case.call(base_url=server, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    errors_name_the_field(response)


def test_fuzzed_requests_reached_the_refiner(upstream):
    """Runs after the fuzzing: some generated requests were valid turns, refined upstream."""
    assert len(upstream.calls_for("coherence")) >= 20  # about 80 in a run
