"""The real-model tier: a real instruct model (a GGUF shipped on PyPI) behind llama-cpp-python's
OpenAI-compatible server, on this CPU, through redraft's production paths with default settings.

`REDRAFT_TEST_REALMODEL` names the model (scripts/local_model.py: qwen2.5-0.5b, the default,
or smollm2-135m). CI sets `REDRAFT_TEST_REALMODEL_REQUIRED=1`, so there a missing server package
fails the tier instead of skipping it; elsewhere the tier is skipped, saying why, when
llama-cpp-python is not installed (`pip install 'llama-cpp-python[server]'`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from redraft.config import RefinerConfig
from scripts.local_model import DEFAULT_MODEL, serve

MODEL = os.environ.get("REDRAFT_TEST_REALMODEL", DEFAULT_MODEL)
REQUIRED = os.environ.get("REDRAFT_TEST_REALMODEL_REQUIRED") == "1"
TIMEOUT_S = 900.0
"""A slow CPU and a server that runs one request at a time: calls wait their turn."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realmodel)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The model server's base URL, for the whole session."""
    if importlib.util.find_spec("llama_cpp") is None:
        if REQUIRED:
            pytest.fail("the real-model tier is required here, and llama-cpp-python is missing")
        pytest.skip("llama-cpp-python[server] is not installed: the real-model tier needs it")
    log = tmp_path_factory.mktemp("realmodel") / "server.log"
    with serve(MODEL, log=log) as base_url:
        yield base_url


@pytest.fixture
def real_config(real_server: str, tmp_path: Path):
    """Only what a user sets: the base URL, a key, the model, and a longer timeout."""

    def make(**overrides) -> RefinerConfig:
        return RefinerConfig(
            base_url=real_server,
            api_key="local",
            model=MODEL,
            timeout_s=TIMEOUT_S,
            home=tmp_path / "home",
            **overrides,
        )

    return make
