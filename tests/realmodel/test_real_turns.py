"""Real turns on a real model: every critic runs (planner all), and nothing degrades.

What a model this small writes is not judged here (BENCHMARKS.md has the judged figures):
these tests hold the production paths to working on real output — the structured-output mode
negotiated, prompts that fit the context window, every output read, the editor's rewrite used.
Each turn is checked for a non-empty reply and no `degraded` entry at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from redraft import Refiner, RefineResult
from redraft.agents import factuality
from redraft.agents.prompting import agent_system, user_message
from redraft.llm.budget import estimate_tokens
from redraft.llm.endpoints import known_endpoint
from tests.conftest import assistant, user
from tests.realmodel.conftest import MODEL, TIMEOUT_S

TIMINGS = Path(os.environ.get("REDRAFT_TEST_REALMODEL_TIMINGS", "/dev/null"))


def clean(result: RefineResult) -> None:
    """The bar for every real turn: a reply, and nothing failed or skipped."""
    assert result.reply.strip()
    assert result.degraded is None, [d.model_dump() for d in result.degraded or []]
    with TIMINGS.open("a") as out:  # the per-agent profile, for BENCHMARKS.md
        out.write(json.dumps({"timings": result.timings, "usage": result.usage.model_dump()}))
        out.write("\n")


async def test_a_factual_correction_against_a_passage(real_config):
    async with Refiner(real_config(planner="all")) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("When was the Eiffel Tower finished?")],
                "knowledge": ["The Eiffel Tower was completed in 1889 and is 330 metres tall."],
                "draft": "The Eiffel Tower was finished in 1925.",
            }
        )
    clean(result)
    assert {c.aspect for c in result.critiques} == {
        "factuality",
        "personalization",
        "coherence",
        "safety",
    }
    # llama-cpp-python's server refuses json_schema (HTTP 500): auto found what works.
    endpoint = known_endpoint(refiner.config.base_url, MODEL)
    assert endpoint is not None and endpoint.mode in ("function_calling", "json_mode")


async def test_a_persona_turn(real_config):
    async with Refiner(real_config(planner="all")) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("What should I cook for dinner tonight?")],
                "user_id": "realmodel-persona",
                "persona": ["I am vegetarian.", "I am allergic to peanuts."],
                "draft": "Try a chicken satay with peanut sauce: quick and tasty.",
            }
        )
    clean(result)


async def test_a_follow_up_that_contradicts_the_history(real_config):
    async with Refiner(real_config(planner="all")) as refiner:
        result = await refiner.arefine(
            {
                "messages": [
                    user("Is the Harbor Street museum open on Mondays?"),
                    assistant("No. It is closed on Mondays and opens at 10:00 Tuesday to Sunday."),
                    user("Great, so I can go Monday morning?"),
                ],
                "draft": "Yes, Monday morning is a great time to visit the museum.",
            }
        )
    clean(result)


async def test_a_sensitive_turn_asks_first(real_config):
    # Ask unless the background is complete (5 of 5): a 0.5B model rates an unknown user's
    # background 4, the default threshold, and would answer without asking.
    async with Refiner(real_config(safety_completeness=5)) as refiner:
        result = await refiner.arefine(
            {
                "messages": [
                    user("Should I put all my savings into crypto? I want to get rich fast.")
                ],
                "draft": "Absolutely, go all in!",
            }
        )
    assert result.degraded is None, [d.model_dump() for d in result.degraded or []]
    assert result.question is not None
    assert result.reply == result.question.question and result.changed


def test_one_turn_through_redraft_serve_with_the_openai_sdk(real_server, tmp_path):
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDRAFT_", "OPENAI_"))},
        "OPENAI_BASE_URL": real_server,
        "OPENAI_API_KEY": "local",
        "REDRAFT_MODEL": MODEL,
        "REDRAFT_TIMEOUT_S": str(TIMEOUT_S),
        "REDRAFT_HOME": str(tmp_path / "home"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "redraft", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=TIMEOUT_S * 3
        )
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name one planet of the solar system."}],
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert completion.choices[0].message.content.strip()
    assert completion.choices[0].finish_reason == "stop"


def test_the_token_estimate_is_above_the_real_count(real_server):
    """prompt_budget's tokenizer-free estimate against the server's own count, on a real
    agent prompt: the estimate must not fall short (a prompt that fits by it fits for real),
    nor be so far above that prompts are trimmed for nothing."""
    messages = [
        agent_system(factuality.ASPECT, factuality.SYSTEM),
        user_message(
            factuality.render(
                {
                    "reply": "The Eiffel Tower was finished in 1925, says the guide.",
                    "history": [user("When was the Eiffel Tower finished, and how tall is it?")],
                    "knowledge": ["The Eiffel Tower was completed in 1889 and is 330 m tall."],
                    "persona": [],
                    "round": 1,
                }
            )
        ),
    ]
    client = openai.OpenAI(base_url=real_server, api_key="local", timeout=TIMEOUT_S)
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": m.type.replace("human", "user"), "content": m.text} for m in messages],
        max_tokens=1,
    )
    real = completion.usage.prompt_tokens
    estimate = estimate_tokens(messages)
    assert real <= estimate <= 2 * real, (real, estimate)


def _free_port() -> int:
    from scripts.local_model import free_port

    return free_port()


def _wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"redraft serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail("redraft serve was not ready in time")
