"""Shared fixtures: a FakeProvider over real HTTP, configs pointing at it, a scripted model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from redraft.config import RefinerConfig
from redraft.llm.endpoints import forget_endpoints
from redraft.testing import FakeProvider, ScriptedChatModel

CRITIC_AGENTS = ("factuality", "personalization", "coherence")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's keys or writes into their data directory, or starts with
    what an earlier test's endpoint taught the process: a FakeProvider's port is reused, and a
    structured-output mode settled there would make the next test's negotiation never happen."""
    forget_endpoints()
    for name in list(os.environ):
        if name.startswith(("REDRAFT_", "OPENAI_")) and not name.startswith("REDRAFT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REDRAFT_HOME", str(tmp_path / "home"))


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def http_config(provider: FakeProvider, tmp_path: Path):
    """A config factory for the real path: ChatOpenAI → openai SDK → HTTP → FakeProvider."""

    def make(**overrides) -> RefinerConfig:
        values = {
            "base_url": provider.base_url,
            "api_key": "test-key",
            "max_retries": 0,
            "home": tmp_path / "home",
            "checkpointer": "memory",
            # These tests script the LLM planner; the router (the default) has its own tests.
            "planner": "llm",
            **overrides,
        }
        return RefinerConfig(**values)

    return make


@pytest.fixture
def scripted() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture(scope="session")
def local_embeddings():
    """The real all-MiniLM-L6-v2 (the `embeddings` extra), loaded once for the whole session."""
    from redraft.embeddings import LocalEmbeddings

    embeddings = LocalEmbeddings()
    embeddings.warm_up()
    return embeddings


@pytest.fixture
def database_url() -> str:
    """The PostgreSQL to test against; CI always sets it, so these tests never skip there."""
    url = os.environ.get("REDRAFT_TEST_DATABASE_URL")
    if not url:
        pytest.skip("REDRAFT_TEST_DATABASE_URL is not set (CI sets it; see .ci/run)")
    return url


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def revise(span: str, fix: str, problem: str = "wrong", evidence: list[str] | None = None) -> dict:
    return {
        "verdict": "revise",
        "issues": [{"span": span, "problem": problem, "fix": fix}],
        "confidence": 0.9,
        "evidence": evidence or [],
    }


PASS = {"verdict": "pass", "issues": [], "confidence": 0.9, "evidence": []}


def plan(*aspects: str) -> dict:
    return {"steps": [{"aspect": a, "reason": f"{a} matters here"} for a in aspects]}
