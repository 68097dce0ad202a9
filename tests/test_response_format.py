"""A client's `response_format` (JSON mode or schema): refinement never breaks a JSON reply. The
real path: ChatOpenAI → openai SDK → HTTP → FakeProvider, and the openai SDK against the server."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from redraft import Refiner
from redraft.state import RefineRequest
from tests.conftest import plan, revise, user

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
DRAFT = json.dumps({"city": "Paris", "population": 5000000})
ASK = user("How many people live in Paris? Answer in JSON.")


def script(provider, rewrite: str) -> None:
    provider.script("responder", DRAFT)
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("5000000", "2100000"))
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "n"}], "reply": rewrite}
    )


async def test_a_rewrite_that_breaks_the_json_keeps_the_draft_and_says_why(provider, http_config):
    script(provider, "About 2.1 million people live in Paris.")
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine({"messages": [ASK], "response_format": FORMAT})
    assert provider.calls_for("responder")[0].response_format == FORMAT  # asked as it came
    assert result.reply == DRAFT and result.changed is False
    (why,) = result.degraded
    assert why.step == "response_format" and "not valid JSON" in why.reason


async def test_a_rewrite_off_the_schema_keeps_the_draft(provider, http_config):
    script(provider, json.dumps({"city": "Paris", "population": "2.1 million"}))
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine({"messages": [ASK], "response_format": FORMAT})
    assert result.reply == DRAFT
    assert "population" in result.degraded[0].reason


async def test_a_rewrite_that_still_validates_is_the_reply(provider, http_config):
    refined = json.dumps({"city": "Paris", "population": 2100000})
    script(provider, refined)
    async with Refiner(http_config()) as refiner:
        result = await refiner.arefine({"messages": [ASK], "response_format": FORMAT})
    assert result.reply == refined and result.changed and result.degraded is None


async def test_json_mode_needs_an_object(provider, http_config):
    script(provider, "[1, 2]")
    async with Refiner(http_config()) as refiner:
        events = [
            e
            async for e in refiner.astream(
                {"messages": [ASK], "response_format": {"type": "json_object"}}
            )
        ]
    result = events[-1].result
    assert result.reply == DRAFT and "not an object" in result.degraded[0].reason
    # nothing of the rejected rewrite was streamed: the reply arrives whole, once checked
    tokens = "".join(e.text for e in events if e.type == "token")
    assert tokens == DRAFT


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"type": "xml"}, "type must be"),
        ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "name"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strange"}}},
            "not a valid JSON schema",
        ),
    ],
)
def test_bad_formats_are_refused_naming_the_field(value, words):
    with pytest.raises(ValidationError, match=words) as info:
        RefineRequest.model_validate({"messages": [ASK], "response_format": value})
    assert info.value.errors()[0]["loc"] == ("response_format",)
