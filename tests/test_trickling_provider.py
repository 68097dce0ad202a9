"""A provider that trickles its answer (issue 18, item 8): each call is cut at `timeout_s` in
total, however steadily the bytes keep coming; the turn keeps the best reply so far."""

from __future__ import annotations

import time

import pytest

from redraft import Refiner
from redraft.llm import direct
from redraft.refiner import TurnDone
from tests.conftest import plan, revise, user

TIMEOUT_S = 2.0


@pytest.fixture(autouse=True, params=["direct", "langchain"])
def provider_path(request, monkeypatch) -> str:
    """Every test on both provider paths: redraft's direct one (the default for a model built by
    name) and LangChain's (the model left unregistered, as a user's own chat model is)."""
    if request.param == "langchain":
        monkeypatch.setattr(direct, "register", lambda model, target: None)
    return request.param


async def test_a_trickling_rewrite_is_cut_at_timeout_s(provider, http_config):
    provider.script("planner", plan("coherence"))
    provider.script("coherence", revise("draft", "better"))
    provider.script("editor", {"changes": [], "reply": " ".join(["slow"] * 400)})
    provider.tokens_per_s = 20  # about twenty seconds of a steady trickle
    refiner = Refiner(http_config(timeout_s=TIMEOUT_S, max_retries=0))
    request = {"messages": [user("hi")], "draft": "The draft reply."}
    started = time.monotonic()
    try:
        result = None
        async for event in refiner.astream(request, reply_tokens=True):
            if isinstance(event, TurnDone):
                result = event.result
    finally:
        await refiner.aclose()
    seconds = time.monotonic() - started
    assert seconds < TIMEOUT_S + 3, seconds
    assert result.reply == "The draft reply."
    assert [d.step for d in result.degraded] == ["merge"]
