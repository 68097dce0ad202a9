"""Evidence-grounded factuality over the real path (ChatOpenAI → HTTP → FakeProvider) with the
real embedding model: passages from the request, the knowledge base and user retrievers reach
the critic with stable ids, claims are cited, contradicted claims are fixed from the passage,
and a retriever that fails or hangs degrades the turn without losing the reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from redraft import Refiner
from redraft.agents.factuality import NO_EVIDENCE
from redraft.knowledge.base import KnowledgeBase
from redraft.state import Passage
from tests.conftest import PASS, user

TOWER = """\
# Port Ellery harbour

## The clock tower

The harbour clock tower of Port Ellery was completed in 1911 and is 42 metres tall.
Its bell was cast in Bristol.
"""

QUESTION = "Tell me about the Port Ellery clock tower."


class StaticRetriever(BaseRetriever):
    """Returns the same documents for every query, and records the queries."""

    documents: list[Document]
    queries: list[str] = Field(default_factory=list)

    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        self.queries.append(query)
        return self.documents


class BrokenRetriever(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        raise RuntimeError("index offline")


class HangingRetriever(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        raise AssertionError("only the async path is used")

    async def _aget_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        await asyncio.sleep(60)
        return []


def claim(text: str, label: str, *passages: str) -> dict:
    return {"text": text, "label": label, "passages": list(passages)}


def factuality(*claims: dict, verdict: str = "pass", issues: list | None = None) -> dict:
    return {
        "claims": list(claims),
        "verdict": verdict,
        "issues": issues or [],
        "confidence": 0.9,
        "evidence": [],
    }


@pytest.fixture
def tower_kb(http_config, tmp_path: Path, local_embeddings) -> Path:
    """A knowledge base (under the configs' REDRAFT_HOME) holding one Markdown file."""
    source = tmp_path / "docs" / "tower.md"
    source.parent.mkdir()
    source.write_text(TOWER)
    KnowledgeBase.from_config(http_config()).add([source])
    return source


def config(http_config, **overrides):
    return http_config(planner="all", critics=["factuality"], **overrides)


def prompt(provider, agent: str, index: int = 0) -> str:
    return str(provider.calls_for(agent)[index].messages[1]["content"])


async def test_passages_reach_the_critic_and_are_cited(provider, http_config, tower_kb):
    provider.script(
        "factuality", factuality(claim("The clock tower is 42 metres tall", "supported", "p2"))
    )
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user(QUESTION)],
                "knowledge": ["Port Ellery is a fishing town on the north coast."],
                "draft": "The clock tower is 42 metres tall.",
            }
        )
    seen = prompt(provider, "factuality")
    assert '<passage id="p1">\nPort Ellery is a fishing town' in seen
    assert '<passage id="p2" source="tower.md#0">' in seen and "42 metres tall" in seen
    assert str(tower_kb.parent) not in seen  # the prompt names the file, not the path
    critique = result.critiques[0]
    assert [(c.label, c.passages) for c in critique.claims] == [("supported", ["p2"])]
    assert critique.evidence == ["p2"]
    assert [(c.id, c.source, c.chunk) for c in result.citations] == [("p2", str(tower_kb), 0)]
    assert "completed in 1911" in result.citations[0].text
    assert provider.calls_for("editor") == [] and result.degraded is None


async def test_a_contradicted_claim_is_corrected_from_the_passage(provider, http_config, tower_kb):
    draft = "The clock tower was completed in 1925 and is 42 metres tall."
    fixed = "The clock tower was completed in 1911 and is 42 metres tall."
    # The critic labels the claim but writes no issue for it: one is added, so it is fixed.
    provider.script(
        "factuality",
        factuality(
            claim("completed in 1925", "contradicted", "p1"),
            claim("is 42 metres tall", "supported", "p1"),
            verdict="pass",
        ),
    )
    provider.script(
        "editor", {"changes": [{"aspect": "factuality", "change": "1925 → 1911"}], "reply": fixed}
    )
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": [user(QUESTION)], "draft": draft})
    critique = result.critiques[0]
    assert critique.verdict == "revise"
    assert [(i.span, i.problem) for i in critique.issues] == [
        ("completed in 1925", "p1 contradicts this claim")
    ]
    editor = prompt(provider, "editor")
    assert '<passage id="p1">\nPort Ellery harbour › The clock tower' in editor
    assert "completed in 1911" in editor and "span: 'completed in 1925'" in editor
    assert "correct it with what p1 says" in editor
    editor_system = str(provider.calls_for("editor")[0].messages[0]["content"])
    assert "hedge or drop a claim no passage supports" in editor_system
    assert result.reply == fixed and result.changed
    assert [c.id for c in result.citations] == ["p1"]


async def test_unknown_passage_ids_do_not_count_as_evidence(provider, http_config, tower_kb):
    provider.script(
        "factuality",
        factuality(
            claim("its bell was cast in Bristol", "supported", "p1"),
            claim("it has 300 steps", "supported", "p7"),
        ),
    )
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user(QUESTION)],
                "draft": "Its bell was cast in Bristol; it has 300 steps.",
            }
        )
    claims = result.critiques[0].claims
    assert [(c.label, c.passages) for c in claims] == [
        ("supported", ["p1"]),
        ("unverifiable", []),
    ]
    assert result.critiques[0].evidence == ["p1"]
    assert [c.id for c in result.citations] == ["p1"]


async def test_without_evidence_the_critic_says_so(provider, http_config):
    provider.script(
        "factuality", factuality(claim("The tower is 42 metres tall", "supported", "p1"))
    )
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine(
            {"messages": [user(QUESTION)], "draft": "The tower is 42 metres tall."}
        )
    assert "<knowledge>\n(none)\n</knowledge>" in prompt(provider, "factuality")
    critique = result.critiques[0]
    assert critique.evidence == [NO_EVIDENCE]
    assert [c.label for c in critique.claims] == ["unverifiable"]
    assert result.citations == [] and result.degraded is None


async def test_retrievers_feed_the_draft_the_critic_and_the_editor(provider, http_config):
    wiki = StaticRetriever(
        documents=[
            Document("Gannet Island has 1,300 inhabitants.", metadata={"source": "island-wiki"}),
            Document("   "),  # empty documents are ignored
        ]
    )
    provider.script("responder", "Gannet Island has 3,000 inhabitants.")
    provider.script(
        "factuality",
        factuality(
            claim("3,000 inhabitants", "contradicted", "p2"),
            verdict="revise",
            issues=[
                {
                    "span": "3,000 inhabitants",
                    "problem": "p2 says 1,300",
                    "fix": "1,300 inhabitants",
                }
            ],
        ),
    )
    provider.script("editor", {"changes": [], "reply": "Gannet Island has 1,300 inhabitants."})
    async with Refiner(config(http_config), retrievers=[wiki]) as refiner:
        result = await refiner.arefine(
            {
                "messages": [user("How many people live on Gannet Island?")],
                "knowledge": ["Gannet Island lies off Port Ellery."],
            }
        )
    assert wiki.queries == ["How many people live on Gannet Island?"]
    responder = str(provider.calls_for("responder")[0].messages)
    assert "1,300 inhabitants" in responder  # the draft was written with the evidence
    assert '<passage id="p2" source="island-wiki">' in prompt(provider, "factuality")
    assert '<passage id="p2">\nGannet Island has 1,300' in prompt(provider, "editor")
    assert result.reply == "Gannet Island has 1,300 inhabitants."
    assert result.citations == [
        Passage(id="p2", text="Gannet Island has 1,300 inhabitants.", source="island-wiki")
    ]


async def test_a_failing_retriever_degrades_the_turn(provider, http_config):
    wiki = StaticRetriever(documents=[Document("Saltmarsh is the island's only village.")])
    provider.script("factuality", PASS)
    async with Refiner(config(http_config), retrievers=[BrokenRetriever(), wiki]) as refiner:
        result = await refiner.arefine({"messages": [user("Tell me about Saltmarsh.")]})
    assert result.reply
    assert [(d.step, d.reason) for d in result.degraded] == [
        ("retrieve", "BrokenRetriever: RuntimeError: index offline")
    ]
    assert '<passage id="p1" source="StaticRetriever">' in prompt(provider, "factuality")


async def test_a_retriever_that_hangs_times_out(provider, http_config):
    provider.script("factuality", PASS)
    cfg = config(http_config, retriever_timeout_s=0.2)
    async with Refiner(cfg, retrievers=[HangingRetriever()]) as refiner:
        result = await refiner.arefine({"messages": [user("hi")], "draft": "Hello!"})
    assert result.reply == "Hello!"
    assert [(d.step, d.reason) for d in result.degraded] == [
        ("retrieve", "HangingRetriever: no answer within 0.2 s")
    ]


async def test_a_corrupt_knowledge_base_degrades_the_turn(provider, http_config, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "kb.sqlite").write_bytes(b"not a database at all" * 200)
    provider.script("factuality", PASS)
    async with Refiner(config(http_config)) as refiner:
        result = await refiner.arefine({"messages": [user(QUESTION)], "draft": "A tall tower."})
    assert result.reply == "A tall tower."
    [problem] = result.degraded
    assert problem.step == "retrieve" and "is corrupt" in problem.reason
    assert "KnowledgeBaseRetriever" in problem.reason


async def test_a_required_knowledge_base_that_is_missing_degrades(provider, http_config):
    provider.script("factuality", PASS)
    async with Refiner(config(http_config, kb="on")) as refiner:
        result = await refiner.arefine({"messages": [user(QUESTION)], "draft": "A tower."})
    assert result.reply == "A tower."
    assert "no knowledge base at" in result.degraded[0].reason


async def test_knowledge_base_off_is_not_searched(provider, http_config, tower_kb):
    provider.script("factuality", PASS)
    async with Refiner(config(http_config, kb="off")) as refiner:
        await refiner.arefine({"messages": [user(QUESTION)], "draft": "A tower."})
    assert "<knowledge>\n(none)\n</knowledge>" in prompt(provider, "factuality")


async def test_citations_belong_to_their_turn(provider, http_config, tower_kb):
    provider.script(
        "factuality",
        factuality(claim("42 metres tall", "supported", "p1")),
        factuality(),
    )
    async with Refiner(config(http_config)) as refiner:
        first = await refiner.arefine(
            {"messages": [user(QUESTION)], "draft": "It is 42 metres tall.", "thread_id": "t"}
        )
        second = await refiner.arefine(
            {"messages": [user("Thanks!")], "draft": "You're welcome!", "thread_id": "t"}
        )
    assert [c.id for c in first.citations] == ["p1"]
    assert second.citations == []
