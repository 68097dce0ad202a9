"""The performance benchmark harness (`python -m benchmarks`): its arithmetic, its report, and
one small run end to end. Timing thresholds are never asserted: those are the benchmark's
findings, not the harness's behaviour."""

from __future__ import annotations

import json
import statistics

import pytest

from benchmarks.__main__ import main as bench
from benchmarks.perf_common import (
    expected_round_trips,
    in_flight,
    provider_seconds,
    round_trips,
)
from benchmarks.perf_provider import Call
from benchmarks.perf_report import BEGIN, END, write_markdown
from redraft import Refiner, ReplyToken
from tests.conftest import CRITIC_AGENTS, plan, revise, user


def call(agent: str, started: float, ended: float) -> Call:
    return Call(agent, started, ended, 200, 10, 5, False)


def test_overlapping_calls_are_one_round_trip():
    calls = [
        call("responder", 0.0, 1.0),
        call("planner", 1.1, 2.0),
        call("coherence", 2.2, 3.0),  # the critics overlap: one round trip
        call("factuality", 2.1, 3.4),
        call("safety", 2.9, 3.2),
        call("editor", 3.5, 4.5),
    ]
    rounds = round_trips(calls)
    assert [[c.agent for c in r] for r in rounds] == [
        ["responder"],
        ["planner"],
        ["factuality", "coherence", "safety"],
        ["editor"],
    ]
    # each round trip counts as long as its slowest call
    assert provider_seconds(rounds) == pytest.approx(1.0 + 0.9 + 1.3 + 1.0)
    assert in_flight(calls) == 3
    assert in_flight([call("a", 0, 1), call("b", 1, 2)]) == 1  # touching spans do not overlap


@pytest.mark.parametrize(
    ("strategy", "planner", "critics", "trips"),
    [
        ("none", "llm", 0, 1),
        ("self_refine", "llm", 0, 3),
        ("sequential", "llm", 3, 5),
        ("sequential", "router", 3, 4),
        ("parallel", "llm", 0, 2),
        ("parallel", "llm", 4, 4),
        ("parallel", "router", 3, 3),
        ("parallel", "router", 0, 1),
    ],
)
def test_round_trips_by_design(strategy, planner, critics, trips):
    assert expected_round_trips(strategy, planner, critics) == trips


def test_only_the_performance_section_is_rewritten(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    others = "# Benchmarks\n\n## Routing\n\nrouter figures\n"
    tail = "\n## Memory\n\nmemory figures\n"
    markdown.write_text(f"{others}\n{BEGIN}\nold numbers\n{END}\n{tail}")
    write_markdown(markdown, "## Performance\n\nnew numbers")
    text = markdown.read_text()
    assert text == f"{others}\n{BEGIN}\n## Performance\n\nnew numbers\n{END}\n{tail}"

    missing = tmp_path / "new.md"
    write_markdown(missing, "## Performance")
    assert missing.read_text().startswith("# Benchmarks") and BEGIN in missing.read_text()

    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text(others)
    write_markdown(unmarked, "## Performance")
    assert unmarked.read_text().startswith(others.rstrip()) and END in unmarked.read_text()

    broken = tmp_path / "broken.md"
    broken.write_text(f"{others}{BEGIN}\nno end")
    with pytest.raises(ValueError, match="not one pair"):
        write_markdown(broken, "## Performance")
    assert broken.read_text() == f"{others}{BEGIN}\nno end"  # left as it was


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "latency"], "--only: unknown part(s) latency"),
        (["--turns", "0"], "--turns must be positive"),
        (["--levels", "0,8"], "--levels"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert bench([*args, "--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_report_without_results_says_so(capsys, tmp_path):
    assert bench(["--report-only", "--results", str(tmp_path)]) == 2
    assert "no saved results" in capsys.readouterr().err


async def test_a_caller_that_does_not_stream_gets_an_unstreamed_editor_call(provider, http_config):
    """The benchmark's finding: streaming the editor's reply costs CPU on every chunk, so
    `arefine` (which reads only the result) does not stream it; `astream` still does."""
    provider.set_default("planner", plan(*CRITIC_AGENTS))
    for agent in CRITIC_AGENTS:
        provider.set_default(agent, revise("Paris", "Paris, France"))
    edited = {"changes": [], "reply": "Paris, France, is lovely in spring and in autumn."}
    provider.set_default("editor", edited)
    request = {"messages": [user("Tell me about Paris.")], "draft": "Paris is lovely."}
    async with Refiner(http_config(planner="llm")) as refiner:
        result = await refiner.arefine(request)
        tokens = [e async for e in refiner.astream(request) if isinstance(e, ReplyToken)]
    assert result.reply == edited["reply"]
    first, second = provider.calls_for("editor")
    assert (first.stream, second.stream) == (False, True)
    assert len(tokens) > 1 and "".join(t.text for t in tokens) == edited["reply"]


def test_a_small_run_end_to_end(tmp_path):
    """Every part at a tiny size, through the real paths (FakeProvider in its own process,
    `redraft serve` as a subprocess); then the JSON's arithmetic, the report and the plots."""
    results, plots, markdown = tmp_path / "results", tmp_path / "plots", tmp_path / "B.md"
    markdown.write_text("# Benchmarks\n\n## Routing\n\nleft alone\n")
    code = bench(
        [
            "--quick",
            "--turns",
            "1",
            "--latency-ms",
            "40",
            "--tokens-per-s",
            "2000",
            "--overhead-turns",
            "3",
            "--levels",
            "1,3",
            "--duration-s",
            "1.5",
            "--cost-cases",
            "6",
            "--results",
            str(results),
            "--plots",
            str(plots),
            "--markdown",
            str(markdown),
        ]
    )
    assert code == 0
    found = {p.name: json.loads(p.read_text()) for p in results.glob("perf-*-quick.json")}
    assert set(found) == {
        "perf-critical-path-quick.json",
        "perf-overhead-quick.json",
        "perf-throughput-quick.json",
        "perf-cost-quick.json",
    }
    for data in found.values():
        assert data["command"].startswith("python -m benchmarks --quick")
        assert data["machine"]["cores"] >= 1 and data["settings"]["latency_ms"] == 40

    critical = found["perf-critical-path-quick.json"]
    assert [r["regime"] for r in critical["regimes"]] == ["round_trips", "generation"]
    for regime in critical["regimes"]:
        for cell in regime["cells"]:
            assert cell["wall_ms"]["n"] == 1
            assert cell["ratio"] == pytest.approx(
                cell["wall_ms"]["p50"] / cell["provider_ms"]["p50"], abs=0.002
            )
            assert cell["plan_as_intended"]
            assert cell["calls_per_turn"] >= cell["expected_round_trips"]
            if "ratio_nominal" in cell:
                nominal = cell["wall_ms"]["p50"] / (cell["round_trips"] * 40)
                assert cell["ratio_nominal"] == pytest.approx(nominal, abs=0.002)
        by_name = {c["cell"]: c for c in regime["cells"]}
        for row in regime["speedups"]:
            parallel = by_name[f"parallel/{row['planner']}/k={row['critics']}"]
            sequential = by_name[f"sequential/{row['planner']}/k={row['critics']}"]
            assert row["speedup"] == pytest.approx(
                sequential["wall_ms"]["p50"] / parallel["wall_ms"]["p50"], abs=0.002
            )

    overhead = found["perf-overhead-quick.json"]
    backends = {c["backend"] for c in overhead["cells"]}
    assert {"none", "sqlite"} <= backends
    assert ("postgres" in backends) == (overhead["postgres"]["skipped"] is None)
    for cell in overhead["cells"]:
        assert cell["overhead_ms"]["n"] == 3 and cell["cpu_ms"]["p50"] > 0
        assert cell["calls_as_intended"]
    assert len(overhead["client_calls"]) == 6
    shares = [p["share"] for p in overhead["profile"]["packages"]]
    assert 0 < sum(shares) <= 1.001

    throughput = found["perf-throughput-quick.json"]
    levels = throughput["levels"]
    assert [r["conversations"] for r in levels] == [1, 3]
    for row in levels:
        assert row["turns"] >= 1 and row["errors"] == 0 and row["peak_rss_mb"] > 0
        assert row["turns_per_s"] == pytest.approx(row["turns"] / row["seconds"], rel=0.01)
    assert levels[1]["p99_over_single_p50"] == pytest.approx(
        levels[1]["latency_ms"]["p99"] / levels[0]["latency_ms"]["p50"], abs=0.01
    )

    cost = found["perf-cost-quick.json"]
    assert cost["cases"] == 6
    for row in cost["strategies"]:
        assert row["usage_matches_provider"]
        assert row["calls_per_turn"] == pytest.approx(
            sum(row["calls_per_turn_by_agent"].values()), abs=0.01
        )
        assert row["tokens_per_turn"] == pytest.approx(
            row["prompt_tokens_per_turn"] + row["completion_tokens_per_turn"], abs=0.2
        )
    none = next(r for r in cost["strategies"] if r["strategy"] == "none")
    assert none["share_no_rewrite_call"] == 1.0 and none["share_changed"] == 0.0

    text = markdown.read_text()
    assert text.startswith("# Benchmarks\n\n## Routing\n\nleft alone\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "### Targets" in text and "### 5. Tokens and calls" in text
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == [
        "perf-cost.png",
        "perf-critical-path.png",
        "perf-overhead.png",
        "perf-speedup.png",
        "perf-throughput.png",
    ]
    assert all((plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)
    assert statistics.mean(len((plots / n).read_bytes()) for n in pngs) > 10_000
