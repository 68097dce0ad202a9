"""The factuality critic's `finalize`: every label rests on passages that exist, and no
contradicted claim is left without a fix."""

from __future__ import annotations

from typing import Any

from redraft.agents.factuality import NO_EVIDENCE, FactualityOutput, finalize
from redraft.config import RefinerConfig
from redraft.state import Claim, CriticTask, Issue

CFG = RefinerConfig()
KNOWLEDGE = ["The Eiffel Tower opened in 1889.", "It is 330 metres tall."]  # p1, p2


def task(**values: Any) -> CriticTask:
    base: CriticTask = {
        "reply": "The Eiffel Tower opened in 1900 and is 330 metres tall.",
        "round": 1,
        "history": [{"role": "user", "content": "Tell me about the Eiffel Tower."}],
        "knowledge": KNOWLEDGE,
    }
    return {**base, **values}  # type: ignore[typeddict-item]


def output(*claims: Claim, **values: Any) -> FactualityOutput:
    return FactualityOutput.model_validate({"verdict": "pass", "claims": claims, **values})


def claim(text: str, label: str, *passages: str) -> Claim:
    return Claim.model_validate({"text": text, "label": label, "passages": passages})


def test_a_passage_id_that_names_no_passage_is_dropped() -> None:
    critique = finalize(output(claim("330 metres tall", "supported", "p2", "p7")), task(), CFG)

    assert critique.claims == [claim("330 metres tall", "supported", "p2")]


def test_a_verdict_resting_on_no_real_passage_is_unverifiable() -> None:
    critique = finalize(
        output(claim("opened in 1900", "contradicted", "p9"), verdict="revise"), task(), CFG
    )

    assert critique.claims == [claim("opened in 1900", "unverifiable")]
    assert critique.verdict == "pass"  # nothing left to fix: no issue was given
    assert critique.issues == []


def test_an_unverifiable_claim_cites_no_passage() -> None:
    critique = finalize(output(claim("It is popular.", "unverifiable", "p1")), task(), CFG)

    assert critique.claims == [claim("It is popular.", "unverifiable")]


def test_repeated_ids_are_cited_once() -> None:
    critique = finalize(output(claim("330 metres", "supported", "p2", "p2")), task(), CFG)

    assert critique.claims[0].passages == ["p2"]


def test_a_contradicted_claim_without_an_issue_gets_one_even_on_pass() -> None:
    critique = finalize(output(claim("opened in 1900", "contradicted", "p1")), task(), CFG)

    assert critique.verdict == "revise"
    assert critique.issues == [
        Issue(
            span="opened in 1900",
            problem="p1 contradicts this claim",
            fix="correct it with what p1 says",
        )
    ]


def test_a_contradicted_claim_already_fixed_gets_no_second_issue() -> None:
    fix = Issue(span="The Eiffel Tower Opened in 1900", problem="p1 says 1889", fix="in 1889")

    critique = finalize(
        output(claim("opened in 1900", "contradicted", "p1"), verdict="revise", issues=[fix]),
        task(),
        CFG,
    )

    assert critique.issues == [fix]


def test_issues_without_a_contradicted_claim_follow_the_verdict() -> None:
    hedge = Issue(span="330 metres", problem="unsupported", fix="about 330 metres")
    supported = claim("330 metres tall", "supported", "p2")

    passed = finalize(output(supported, issues=[hedge]), task(), CFG)
    revised = finalize(output(supported, verdict="revise", issues=[hedge]), task(), CFG)

    assert (passed.verdict, passed.issues) == ("pass", [])
    assert (revised.verdict, revised.issues) == ("revise", [hedge])


def test_evidence_is_the_cited_passages_then_other_real_ids() -> None:
    critique = finalize(
        output(claim("330 metres tall", "supported", "p2"), evidence=["p1", "p2", "p5", "f1"]),
        task(),
        CFG,
    )

    assert critique.evidence == ["p2", "p1"]


def test_retrieved_passages_count_as_evidence() -> None:
    retrieved = [
        {"id": "p1", "text": KNOWLEDGE[0]},
        {"id": "p3", "text": "Gustave Eiffel's company built it.", "source": "kb/eiffel.md"},
    ]

    critique = finalize(
        output(claim("built by Eiffel's company", "supported", "p3")),
        task(evidence=retrieved),
        CFG,
    )

    assert critique.claims[0].passages == ["p3"]
    assert critique.evidence == ["p3"]


def test_without_evidence_every_claim_is_unverifiable_and_said_to_be() -> None:
    critique = finalize(
        output(claim("opened in 1900", "contradicted", "p1"), evidence=["p1"]),
        task(knowledge=[]),
        CFG,
    )

    assert critique.claims == [claim("opened in 1900", "unverifiable")]
    assert critique.evidence == [NO_EVIDENCE]
    assert critique.verdict == "pass"


def test_the_critique_names_its_aspect_round_and_confidence() -> None:
    critique = finalize(output(confidence=0.9), task(round=3), CFG)

    assert (critique.aspect, critique.round, critique.confidence) == ("factuality", 3, 0.9)
