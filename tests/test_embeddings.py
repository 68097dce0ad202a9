"""Embeddings: the real local all-MiniLM-L6-v2, the OpenAI alternative over HTTP, and the extra."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from langchain_openai import OpenAIEmbeddings
from pydantic import ValidationError

from redraft import embeddings as module
from redraft.config import RefinerConfig
from redraft.embeddings import EmbeddingsNotInstalledError, LocalEmbeddings, get_embeddings
from redraft.llm.calls import ModelNotConfiguredError


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_local_vectors_are_unit_length_and_meaningful(local_embeddings):
    cat, kitten, tax = local_embeddings.embed_documents(
        ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Income tax is due in April."]
    )
    assert len(cat) == 384
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in (cat, kitten, tax))
    assert cosine(cat, kitten) > cosine(cat, tax) + 0.3
    assert local_embeddings.embed_query("A cat sleeps on the sofa.") == pytest.approx(cat, abs=1e-5)
    assert local_embeddings.embed_documents([]) == []


def test_the_model_is_loaded_once_per_process(local_embeddings):
    loaded = module._model
    assert loaded is not None
    other = get_embeddings(RefinerConfig())
    assert isinstance(other, LocalEmbeddings)
    other.embed_query("hello")
    assert module._model is loaded


async def test_async_embedding_does_not_block_the_event_loop(local_embeddings):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    texts = [f"Sentence number {i} about something else entirely." for i in range(300)]
    vectors = await local_embeddings.aembed_documents(texts)
    query = await local_embeddings.aembed_query(texts[0])
    task.cancel()
    assert len(vectors) == 300 and query == pytest.approx(vectors[0], abs=1e-5)
    assert ticks > 5  # the loop kept running while the model encoded


def test_importing_redraft_does_not_load_the_model():
    code = (
        "import sys, redraft, redraft.graphs.refine, redraft.routing, redraft.cli\n"
        "from redraft.config import RefinerConfig\n"
        "RefinerConfig()\n"
        "heavy = ('torch', 'sentence_transformers', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_is_named_and_the_planner_default_falls_back(monkeypatch):
    monkeypatch.setattr(module, "local_model_installed", lambda: False)
    monkeypatch.setattr("redraft.config.local_model_installed", lambda: False)
    with pytest.raises(EmbeddingsNotInstalledError, match=r"redraft\[embeddings\]"):
        get_embeddings(RefinerConfig())
    assert RefinerConfig().planner == "llm"


def test_router_is_the_default_planner_when_the_extra_is_installed():
    assert RefinerConfig().planner == "router"


def test_unknown_embeddings_choice_is_a_config_error():
    with pytest.raises(ValidationError, match="openai:<model>"):
        RefinerConfig(embeddings="word2vec")


class _EmbeddingsServer(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible /embeddings endpoint: vector = [len(text), index, 1]."""

    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), float(i), 1.0]}
            for i, text in enumerate(body["input"])
        ]
        payload = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    _EmbeddingsServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_openai_embeddings_go_over_http(embeddings_server):
    config = RefinerConfig(
        embeddings="openai:text-embedding-3-small", base_url=embeddings_server, api_key="k"
    )
    embeddings = get_embeddings(config)
    assert isinstance(embeddings, OpenAIEmbeddings)
    assert embeddings.embed_documents(["ab", "abcd"]) == [[2.0, 0.0, 1.0], [4.0, 1.0, 1.0]]
    assert await embeddings.aembed_query("abc") == [3.0, 0.0, 1.0]
    sent = _EmbeddingsServer.requests[0]
    assert sent["path"] == "/v1/embeddings" and sent["model"] == "text-embedding-3-small"
    assert sent["input"] == ["ab", "abcd"]  # text, not tokens: the server tokenises


def test_openai_embeddings_need_a_provider():
    with pytest.raises(ModelNotConfiguredError, match="OPENAI_API_KEY"):
        get_embeddings(RefinerConfig(embeddings="openai:text-embedding-3-small"))
