"""A provider that trickles its answer (issue 18, item 8): each call is cut at `timeout_s` in
total, however steadily the bytes keep coming; the turn keeps the best reply so far."""

from __future__ import annotations

import time

from redraft import Refiner
from redraft.refiner import TurnDone
from tests.conftest import plan, revise, user

TIMEOUT_S = 2.0


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
