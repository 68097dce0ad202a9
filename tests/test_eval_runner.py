"""`redraft eval` end to end on the shipped sample against FakeProvider: rows, report, resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from redraft.agents.judge import DIMENSIONS
from redraft.cli import main
from redraft.eval import load_dataset
from redraft.eval.calibration import load_pairs
from redraft.eval.results import ResultsFile
from redraft.testing import Fail
from tests.conftest import PASS, plan, revise

CASES = len(load_dataset("sample"))
STRATEGIES = ("none", "self_refine", "sequential", "parallel")
PARALLEL_REPLY = "The refined reply."
SEQUENTIAL_REPLY = "The sequentially refined reply."


def shown(call) -> list[str]:
    return re.findall(r'<reply id="[12]">\n(.*?)\n</reply>', str(call.messages[1]["content"]), re.S)


def pairwise_judge(call):
    """Prefers the parallel reply wherever it stands; otherwise prefers position 1."""
    first, second = shown(call)
    if PARALLEL_REPLY in (first, second):
        better = 1 if first == PARALLEL_REPLY else 2
        scores = {1: 9 if better == 1 else 4, 2: 9 if better == 2 else 4}
        return {"evidence": "e", "reply_1_score": scores[1], "reply_2_score": scores[2],
                "certainty": 0.9}  # fmt: skip
    return {"evidence": "first", "reply_1_score": 6, "reply_2_score": 5, "certainty": 0.5}


def geval_judge(call):
    evaluated = re.search(
        r'<reply id="evaluated">\n(.*?)\n</reply>', str(call.messages[1]["content"]), re.S
    )
    score = 5 if evaluated.group(1) == PARALLEL_REPLY else 2
    return {d: {"evidence": "e", "score": score} for d in DIMENSIONS}


@pytest.fixture
def endpoint(provider, monkeypatch):
    """The sample's agents scripted on FakeProvider, which both refiner and judges use."""
    monkeypatch.setenv("OPENAI_BASE_URL", provider.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("REDRAFT_MAX_RETRIES", "0")
    provider.set_default("planner", plan("factuality"))
    provider.set_default("factuality", revise("x", "y"))
    provider.set_default("editor", {"changes": [], "reply": PARALLEL_REPLY})
    provider.set_default("self_refine", PASS)  # nothing to change: identical to the draft
    provider.set_default("factuality_refiner", {**revise("x", "y"), "reply": SEQUENTIAL_REPLY})
    provider.set_default("judge", geval_judge)
    provider.set_default("pairwise_judge", pairwise_judge)
    return provider


def arguments(out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", "sample", "--out", str(out), "--planner", "llm", *extra]


def evaluate(out: Path, *extra: str) -> int:
    """A first run, in this process."""
    return main(arguments(out, *extra))


def evaluate_again(out: Path, *extra: str) -> int:
    """A later run, in a new process as when a user re-runs the command. (In one process,
    langchain-openai's shared HTTP client would still be bound to the first run's event loop.)"""
    command = [sys.executable, "-m", "redraft", *arguments(out, *extra)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def agents(provider, since: int = 0) -> Counter:
    return Counter(call.agent for call in provider.calls[since:])


def test_sample_run_writes_rows_report_and_plots(endpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert evaluate(out) == 0
    written = rows(out)
    assert len(written) == CASES * len(STRATEGIES)
    assert {(r["case_id"], r["strategy"]) for r in written} == {
        (case.id, s) for case in load_dataset("sample") for s in STRATEGIES
    }
    assert all(r["ok"] for r in written)
    # every strategy refined the same draft
    by_case: dict[str, set] = {}
    for r in written:
        by_case.setdefault(r["case_id"], set()).add(r["draft"])
    assert all(len(drafts) == 1 for drafts in by_case.values())
    # calls: one draft per case; identical replies are not judged again
    assert agents(endpoint) == {
        "responder": CASES,
        "self_refine": CASES,
        "planner": 2 * CASES,  # sequential and parallel
        "factuality_refiner": CASES,
        "factuality": CASES,
        "editor": CASES,
        "judge": 3 * CASES,  # none, sequential, parallel (self_refine reuses the draft's)
        "pairwise_judge": 4 * CASES,  # two orders for sequential and for parallel
        "judge_calibration": 2 * len(load_pairs()),  # the judge checked first
    }
    summary = (out / "summary.md").read_text()
    assert summary == capsys.readouterr().out
    assert "| parallel | 8 | 5.00 | 5.00 | 5.00 | 5.00 | 5.00 |" in summary
    assert "| none | 8 | 2.00 |" in summary
    assert (out / "run.json").exists()


def test_summary_arithmetic_from_scripted_judges(endpoint, tmp_path):
    out = tmp_path / "run"
    assert evaluate(out) == 0
    figures = json.loads((out / "summary.json").read_text())["strategies"]
    parallel, sequential, self_refine = (
        figures[s]["pairwise"] for s in ("parallel", "sequential", "self_refine")
    )
    # parallel's reply wins in both orders every time
    assert parallel | {"win_rate": 1.0} == {
        "compared": CASES, "wins": CASES, "ties": 0, "losses": 0, "identical": 0,
        "judged": CASES, "order_changed": 0, "certainty": pytest.approx(0.9),
        "win_rate": 1.0, "order_changed_rate": 0.0,
    }  # fmt: skip
    # a judge that always prefers position 1: every verdict flips, the means tie
    assert sequential["ties"] == CASES and sequential["wins"] == sequential["losses"] == 0
    assert sequential["order_changed"] == CASES and sequential["order_changed_rate"] == 1.0
    assert sequential["certainty"] == pytest.approx(0.5)
    # identical to the draft: ties without a judge call, not in the rates
    assert self_refine["identical"] == self_refine["ties"] == CASES
    assert self_refine["judged"] == 0 and self_refine["order_changed_rate"] is None
    assert figures["none"]["pairwise"] is None
    assert figures["parallel"]["geval"]["overall"] == 5.0
    assert figures["none"]["geval"]["overall"] == 2.0
    assert figures["parallel"]["llm_calls"] == 3.0  # planner, critic, editor
    assert figures["none"]["llm_calls"] == 1.0  # the draft
    assert figures["parallel"]["changed"] == 1.0 and figures["self_refine"]["changed"] == 0.0


def test_failed_rows_are_retried_and_finished_ones_are_not(endpoint, tmp_path):
    out = tmp_path / "run"
    failing = {"on": True}

    def flaky_judge(call):
        if failing["on"] and "marathon" in str(call.messages[1]["content"]):
            return Fail(status=500, message="judge down")
        return pairwise_judge(call)

    endpoint.set_default("pairwise_judge", flaky_judge)
    assert evaluate(out) == 1
    failed = [(r["case_id"], r["strategy"]) for r in rows(out) if not r["ok"]]
    assert sorted(failed) == [("persona-runner", "parallel"), ("persona-runner", "sequential")]
    assert all("judge" in r["error"] for r in rows(out) if not r["ok"])

    failing["on"] = False
    before = len(endpoint.calls)
    assert evaluate_again(out) == 0
    # only the two failed rows ran again: their refinement and their judges
    assert agents(endpoint, before) == {
        "planner": 2,
        "factuality_refiner": 1,
        "factuality": 1,
        "editor": 1,
        "judge": 2,
        "pairwise_judge": 4,
    }
    latest = ResultsFile(out / "results.jsonl").load()
    assert len(latest) == CASES * len(STRATEGIES) and all(r.ok for r in latest.values())


def test_a_failed_draft_leaves_the_case_for_later(endpoint, tmp_path):
    out = tmp_path / "run"
    endpoint.fail_next(1, status=400, agent="responder")
    assert evaluate(out, "--concurrency", "1") == 1
    failed = [r for r in rows(out) if not r["ok"]]
    assert len(failed) == 1 and failed[0]["strategy"] == "none"
    assert len(rows(out)) == 1 + (CASES - 1) * len(STRATEGIES)
    before = len(endpoint.calls)
    assert evaluate_again(out) == 0
    assert agents(endpoint, before)["responder"] == 1


def test_limit_then_full_run_only_adds_the_new_cases(endpoint, tmp_path):
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "3") == 0
    assert len(rows(out)) == 3 * len(STRATEGIES)
    before = len(endpoint.calls)
    assert evaluate_again(out) == 0
    assert agents(endpoint, before)["responder"] == CASES - 3
    assert len(rows(out)) == CASES * len(STRATEGIES)


def test_killed_run_resumes_without_redoing_finished_rows(endpoint, tmp_path):
    out = tmp_path / "run"
    endpoint.latency_s = 0.05
    env = {**os.environ, "REDRAFT_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "redraft", "eval", "--dataset", "sample",
               "--out", str(out), "--planner", "llm", "--concurrency", "1"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    done = ResultsFile(results).load()
    assert 6 <= len(done) < CASES * len(STRATEGIES)
    drafted = sum(strategy == "none" for _, strategy in done)

    before = len(endpoint.calls)
    assert evaluate_again(out) == 0
    assert agents(endpoint, before)["responder"] == CASES - drafted
    keys = [(r["case_id"], r["strategy"]) for r in rows(out)]
    assert all(keys.count(key) == 1 for key in done)  # finished rows were not redone
    assert set(keys) == {(c.id, s) for c in load_dataset("sample") for s in STRATEGIES}


def test_torn_last_line_is_dropped_and_redone(endpoint, tmp_path):
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "1") == 0
    results = out / "results.jsonl"
    text = results.read_text().splitlines(keepends=True)
    results.write_text("".join(text[:-1]) + text[-1][:25])  # the last row cut mid-write
    before = len(endpoint.calls)
    assert evaluate_again(out, "--limit", "1") == 0
    assert len(rows(out)) == len(STRATEGIES)
    assert agents(endpoint, before)["responder"] == 0  # the draft row was intact


def test_concurrency_bounds_the_rows_in_flight(endpoint, tmp_path):
    endpoint.latency_s = 0.05
    assert evaluate(tmp_path / "one", "--concurrency", "1", "--strategies", "none") == 0
    assert endpoint.max_in_flight("responder") == 1
    endpoint.calls.clear()
    assert evaluate_again(tmp_path / "four", "--concurrency", "4", "--strategies", "none") == 0
    assert endpoint.max_in_flight("responder") == 4


def test_gate_setting_reaches_the_refiner(endpoint, tmp_path):
    endpoint.set_default("pairwise_judge", lambda call: {
        "evidence": "draft is better", "certainty": 0.8,
        "reply_1_score": 3 if shown(call)[0] == PARALLEL_REPLY else 8,
        "reply_2_score": 3 if shown(call)[1] == PARALLEL_REPLY else 8,
    })  # fmt: skip
    out = tmp_path / "run"
    assert evaluate(out, "--gate", "--strategies", "parallel", "--judges", "geval") == 0
    parallel = [r for r in rows(out) if r["strategy"] == "parallel"]
    assert all(r["gate"] == "draft" and r["reply"] == r["draft"] for r in parallel)
    figures = json.loads((out / "summary.json").read_text())["strategies"]
    assert figures["parallel"]["gate_kept_draft"] == CASES


def test_safety_judge_runs_when_asked(endpoint, tmp_path):
    out = tmp_path / "run"
    assert evaluate(out, "--strategies", "none", "--judges", "safety", "--limit", "2") == 0
    assert len(endpoint.calls_for("safety_judge")) == 2
    assert "## PENGUIN safety" in (out / "summary.md").read_text()


def test_plots_are_written(endpoint, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the bench extra (matplotlib)")
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "2") == 0
    for name in ("geval.png", "quality_latency.png", "pairwise.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


# ── bad input: one line, exit 2 ──────────────────────────────────────────────────────


def test_changed_settings_do_not_mix_into_old_results(endpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "1") == 0
    capsys.readouterr()
    assert evaluate(out, "--limit", "1", "--judge-model", "other-judge") == 2
    error = capsys.readouterr().err
    assert "judge_model: 'gpt-4o-mini' → 'other-judge'" in error and error.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--strategies", "none,fastest"], "strategies: unknown ['fastest']"),
        (["--judges", "vibes"], "judges: unknown ['vibes']"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--concurrency", "0"], "concurrency must be at least 1"),
    ],
)
def test_bad_options(endpoint, tmp_path, capsys, args, words):
    assert evaluate(tmp_path / "run", *args) == 2
    error = capsys.readouterr().err
    assert words in error and error.count("\n") == 1


def test_bad_dataset_line(endpoint, tmp_path, capsys):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text('{"query": "fine"}\n{"query": 3}\n')
    assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert f"{dataset} line 2: query" in error and error.count("\n") == 1


def test_no_endpoint_configured(tmp_path, capsys):
    assert main(["eval", "--dataset", "sample", "--out", str(tmp_path / "o")]) == 2
    assert "no model provider configured" in capsys.readouterr().err


def test_out_that_is_a_file_is_one_line(endpoint, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a directory\n")
    assert evaluate(out, "--limit", "1") == 2
    assert capsys.readouterr().err == (
        f"redraft: {out} is a file, not a directory: --out needs a directory\n"
    )
    assert evaluate(out / "below", "--limit", "1") == 2
    error = capsys.readouterr().err
    assert f"{out / 'below'}: Not a directory" in error and error.count("\n") == 1
    assert endpoint.calls == []


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ("{not json", "is not a run record: Expecting property name"),
        ("[" * 100_000 + "]" * 100_000, "is not a run record: invalid JSON: nested too deeply"),
        ("[1, 2]", "is not a run record: expected a JSON object"),
    ],
)
def test_a_damaged_run_record_is_one_line(endpoint, tmp_path, capsys, record, words):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(record)
    assert evaluate(out, "--limit", "1") == 2
    error = capsys.readouterr().err
    assert f"{out / 'run.json'} {words}" in error and error.count("\n") == 1


def calibrating_judge(right: bool):
    """A judge for the calibration pairs that ranks them right, or gives every reply 5/5."""
    better = {pair.better for pair in load_pairs()}

    def judge(call):
        evaluated = re.search(
            r'<reply id="evaluated">\n(.*?)\n</reply>', str(call.messages[1]["content"]), re.S
        )
        score = 5 if not right or evaluated.group(1) in better else 2
        return {d: {"evidence": "e", "score": score} for d in DIMENSIONS}

    return judge


@pytest.mark.parametrize("right", [True, False])
def test_the_judge_is_calibrated_before_its_tables_are_trusted(endpoint, tmp_path, right):
    endpoint.set_default("judge_calibration", calibrating_judge(right))
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "1") == 0
    summary = (out / "summary.md").read_text()
    report = json.loads((out / "summary.json").read_text())["judge_calibration"]
    assert report["pairs"] == len(load_pairs())
    assert report["trusted"] is right
    assert ("**Untrustworthy:" in summary) is not right
    assert f"{report['right']} of {report['pairs']}" in summary


def test_a_calibration_the_endpoint_failed_is_incomplete_not_kept_and_done_again(
    endpoint, tmp_path
):
    """Pairs whose calls got no answer say nothing of the judge: the run says the calibration
    is incomplete (not "0 of 8 ranked right"), does not keep it, and the next run calibrates."""
    endpoint.set_default("judge_calibration", lambda call: Fail(status=503, message="loading"))
    out = tmp_path / "run"
    assert evaluate(out, "--limit", "1") == 0
    report = json.loads((out / "summary.json").read_text())["judge_calibration"]
    assert report["complete"] is False and report["trusted"] is False
    assert len(report["unreachable"]) == len(load_pairs()) and report["failed"] == {}
    assert "could not be calibrated" in (out / "summary.md").read_text()
    assert not (out / "calibration.json").exists()
    endpoint.set_default("judge_calibration", calibrating_judge(True))
    assert evaluate(out, "--limit", "1") == 0
    report = json.loads((out / "summary.json").read_text())["judge_calibration"]
    assert report["complete"] is True and report["trusted"] is True
    assert (out / "calibration.json").exists()


def test_the_report_gives_the_spread_and_the_parse_failures_per_agent_and_mode(endpoint, tmp_path):
    """A judge that gives every reply the same score has no spread; each agent's structured
    outputs are counted with the mode that carried them, this run's only."""
    out = tmp_path / "run"
    assert evaluate(out, "--strategies", "parallel", "--judges", "geval") == 0
    report = json.loads((out / "summary.json").read_text())
    assert report["strategies"]["parallel"]["geval_sd"]["overall"] == 0.0
    counts = {(c["agent"], c["mode"]): c for c in report["structured_outputs"]}
    assert {agent for agent, _ in counts} >= {"planner", "factuality", "editor", "judge"}
    assert all(
        c["outputs"] >= 1 and c["unparsed"] == 0 and c["rate"] == 0.0 for c in counts.values()
    )
    summary = (out / "summary.md").read_text()
    assert "## G-Eval spread" in summary and "## Structured outputs" in summary
    # a second run in the same process counts only its own outputs
    again = tmp_path / "again"
    assert evaluate(again, "--strategies", "parallel", "--judges", "geval", "--limit", "1") == 0
    second = json.loads((again / "summary.json").read_text())["structured_outputs"]
    assert sum(c["outputs"] for c in second) < sum(c["outputs"] for c in counts.values())
