"""API keys and persona text never reach the logs at INFO (persona text may at DEBUG).

Turns run with a provider key set, inline persona facts, learned facts, a safety question and
failures; everything logged — redraft's structlog lines and the libraries' standard logging
(openai, httpx, uvicorn) — is searched for the secrets.
"""

from __future__ import annotations

import io
import logging

import httpx
import pytest

from redraft import Refiner
from redraft.testing import Fail
from tests.conftest import plan, revise, user
from tests.servers import redraft_serve, server_env

PROVIDER_KEY = "sk-provider-7f3c9a1e5d"
CLIENT_KEY = "rk-client-2b8e4d6f0a"
PERSONA = "PERSONA-TEXT: the user is recovering from a kidney transplant"
LEARNED = "LEARNED-TEXT: the user owes money to a loan shark"
SECRETS = (PROVIDER_KEY, CLIENT_KEY)
PRIVATE = ("PERSONA-TEXT", "LEARNED-TEXT")


@pytest.fixture
def library_logs():
    """The standard library's logging at INFO, as a server would configure it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


async def run_turns(provider, http_config, level: str) -> None:
    provider.script("memory", {"facts": [{"action": "add", "text": LEARNED}]})
    provider.set_default("planner", plan("personalization", "coherence"))
    provider.set_default("personalization", revise("answer", PERSONA))
    provider.set_default("coherence", Fail(500, f"upstream failed on {PERSONA}"))
    config = http_config(
        api_key=PROVIDER_KEY,
        planner="llm",
        critics=["personalization", "coherence"],
        log_level=level,
    )
    async with Refiner(config) as refiner:
        for text in ("I need advice on my diet.", "And on exercise?"):
            await refiner.arefine(
                {"messages": [user(text)], "user_id": "sam", "thread_id": "t", "persona": [PERSONA]}
            )
            await refiner.wait_for_memory()


async def test_no_key_and_no_persona_text_at_info(provider, http_config, capsys, library_logs):
    await run_turns(provider, http_config, "INFO")
    logged = capsys.readouterr().err + library_logs.getvalue()
    assert '"event": "turn.done"' in logged  # the logs were captured
    for secret in (*SECRETS, *PRIVATE):
        assert secret not in logged
    # the secrets did reach the provider, so their absence from the logs means something
    sent = str([c.messages for c in provider.calls])
    assert "PERSONA-TEXT" in sent and "LEARNED-TEXT" in sent


async def test_persona_text_shows_at_debug_but_never_the_key(
    provider, http_config, capsys, library_logs
):
    await run_turns(provider, http_config, "DEBUG")
    logged = capsys.readouterr().err + library_logs.getvalue()
    assert "PERSONA-TEXT" in logged
    assert PROVIDER_KEY not in logged


def test_the_server_logs_no_key_and_no_persona_text(tmp_path):
    """`redraft serve` at INFO: client keys, the provider key and persona text stay out of its
    log, through refined turns, a failing upstream and refused requests."""
    from redraft.testing import FakeProvider

    with FakeProvider() as upstream:
        upstream.set_default("planner", plan("personalization"))
        upstream.set_default("personalization", revise("answer", PERSONA))
        env = server_env(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY=PROVIDER_KEY,
            REDRAFT_API_KEYS=f"{CLIENT_KEY}:sam",
            REDRAFT_HOME=str(tmp_path / "home"),
            REDRAFT_PLANNER="llm",
            REDRAFT_CRITICS="personalization",
            REDRAFT_MAX_RETRIES="0",
            REDRAFT_LOG_LEVEL="INFO",
        )
        log = tmp_path / "serve.log"
        with redraft_serve(env, log) as url:
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            body = {
                "model": "redraft",
                "messages": [user("What should I eat?")],
                "persona": [PERSONA],
                "thread_id": "t",
            }
            with httpx.Client(base_url=url, timeout=60) as client:
                assert client.post("/v1/chat/completions", json=body, headers=headers).is_success
                upstream.set_default("responder", Fail(500, f"failed on {PERSONA}"))
                failed = client.post("/v1/chat/completions", json=body, headers=headers)
                assert failed.status_code == 502
                wrong = {"Authorization": f"Bearer {CLIENT_KEY}x"}
                assert (
                    client.post("/v1/chat/completions", json=body, headers=wrong).status_code == 401
                )
                bad = {**body, "persona": PERSONA}  # not a list: 400
                assert (
                    client.post("/v1/chat/completions", json=bad, headers=headers).status_code
                    == 400
                )
        logged = log.read_text()
    # the turn's line and the access line (issue 14: redraft's own, as JSON) are there
    assert "turn.done" in logged and '"path": "/v1/chat/completions"' in logged
    for secret in (*SECRETS, *PRIVATE):
        assert secret not in logged
