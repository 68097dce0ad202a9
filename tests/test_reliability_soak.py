"""The soak under faults, CI-sized: 150 turns while 20% of provider calls fail.

The full run (≥ 1,000 turns) is `python -m benchmarks.soak`; its figures are in RELIABILITY.md.
"""

from __future__ import annotations

from benchmarks.soak import FAULTS, soak

KINDS = {"http_500", "http_429", *(f.kind for f in FAULTS if hasattr(f, "kind"))}


async def test_every_turn_ends_with_a_reply_or_a_typed_error_by_its_deadline():
    result = await soak(150, fault_rate=0.2, deadline_s=2.0)
    report = result.report()
    assert result.problems == []
    assert report["turns"] == 150
    # every fault kind was injected, and the turns still ended as they must
    assert set(report["faults_injected"]) == KINDS
    assert set(report["outcomes"]) <= {"reply", "reply_degraded", "error:draft", "error:deadline"}
    assert report["outcomes"]["reply_degraded"] > 0
    # every thread holds exactly the turns that got a reply
    assert report["threads_checked"] == 24 and report["turns_lost"] == 0
