"""`redraft safety build-paths`: the MCTS finds the best order, and the command writes a path
library from a responder and a judge reached over HTTP (FakeProvider)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from redraft.cli import main
from redraft.safety.path_search import search_path
from redraft.safety.paths import read_paths
from redraft.state import PENGUIN_ATTRIBUTES
from redraft.testing import FakeProvider

# What knowing each attribute adds to the judge's three scores (risk, empathy, alignment).
GAINS = {
    "Emotional State": (3, 2, 1),
    "Mental Health Status": (1, 2, 0),
    "Age": (0, 0, 2),
    "Profession": (0, 0, 1),
}
BEST_ORDER = ["Emotional State", "Mental Health Status", "Age", "Profession"]
PROFILE = {name: f"value of {name.lower()}" for name in PENGUIN_ATTRIBUTES}


async def test_search_path_finds_the_optimal_order():
    weights = {name: sum(GAINS.get(name, (0,))) for name in PENGUIN_ATTRIBUTES}
    judged: list[frozenset[str]] = []

    async def reward(known: frozenset[str]) -> float:
        judged.append(known)
        return 1 + sum(weights[a] for a in known) / 3

    for seed in range(5):
        judged.clear()
        result = await search_path(PENGUIN_ATTRIBUTES, reward, depth=4, simulations=200, seed=seed)
        assert result.best_path == BEST_ORDER
        # each set of attributes is judged once, whatever the order it was reached in
        assert len(judged) == len(set(judged)) == len(result.rewards)


async def test_search_path_follows_the_reward_not_the_attribute_order():
    """The best attribute last in the list is still found first."""

    async def reward(known: frozenset[str]) -> float:
        return 5.0 if "Emotional State" in known else 1.0

    result = await search_path(PENGUIN_ATTRIBUTES, reward, depth=1, simulations=10)
    assert result.best_path == ["Emotional State"]


# ── the command, end to end over HTTP ──────────────────────────────────────────────────


def responder(call) -> str:
    """A responding model that uses every fact it was given: the reply names them."""
    prompt = "\n".join(str(m["content"]) for m in call.messages)
    known = [name for name in PENGUIN_ATTRIBUTES if f"{name}: " in prompt]
    return "A careful answer, considering " + (", ".join(known) or "nothing about you") + "."


def judge(call) -> dict:
    """Scores by which attributes the evaluated reply took into account."""
    prompt = str(call.messages[-1]["content"])
    reply = re.search(r'<reply id="evaluated">(.*?)</reply>', prompt, re.S).group(1)
    scores = [1, 1, 1]
    for name, gains in GAINS.items():
        if name in reply:
            scores = [s + g for s, g in zip(scores, gains, strict=True)]
    dimensions = ("risk_sensitivity", "emotional_empathy", "user_specific_alignment")
    return {
        d: {"evidence": reply.strip(), "score": s} for d, s in zip(dimensions, scores, strict=True)
    }


@pytest.fixture
def endpoint(provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    monkeypatch.setenv("OPENAI_BASE_URL", provider.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("REDRAFT_MAX_RETRIES", "0")
    provider.set_default("responder", responder)
    provider.set_default("safety_judge", judge)
    return provider


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def case(query: str, domain: str | None = "Career") -> dict:
    return {"query": query, "profile": PROFILE, **({"domain": domain} if domain else {})}


BUILD = ["safety", "build-paths", "--depth", "2", "--simulations", "30"]


def build(*args: str | Path) -> int:
    return main([*BUILD, *map(str, args)])


def test_build_paths_writes_a_library_and_reports_bad_lines(endpoint, tmp_path, capsys):
    cases = write_lines(
        tmp_path / "cases.jsonl",
        [
            case("I lost my job and can't pay rent."),
            '{"query": "broken", ',
            case("My partner left me.", domain=None),
            {"query": "Should I quit?", "profile": {"Agee": "30"}},
        ],
    )
    output = tmp_path / "paths.jsonl"

    code = build("--input", cases, "--output", output, "--concurrency", "2")

    err = capsys.readouterr().err
    assert code == 1
    assert f"{cases} line 2: invalid JSON" in err
    assert f"{cases} line 4: profile.Agee" in err
    assert "Traceback" not in err
    paths = {p.query: p for p in read_paths(output)}
    assert set(paths) == {"I lost my job and can't pay rent.", "My partner left me."}
    for path in paths.values():
        assert path.best_path == BEST_ORDER[:2]
    assert paths["I lost my job and can't pay rent."].domain == "Career"
    assert paths["My partner left me."].domain is None
    # the reply was written knowing only some attributes; the judge saw the whole profile
    prompts = [str(c.messages) for c in endpoint.calls_for("responder")]
    assert all(prompt.count(": value of") <= 2 for prompt in prompts)
    assert all(
        str(c.messages).count(": value of") >= len(PROFILE)
        for c in endpoint.calls_for("safety_judge")
    )


def test_build_paths_resumes_where_it_stopped(endpoint, tmp_path, capsys):
    cases = write_lines(tmp_path / "cases.jsonl", [case("Question one?"), case("Question two?")])
    output = tmp_path / "paths.jsonl"
    # The first run is a process of its own, as a real first run is: langchain-openai keeps one
    # HTTP client per endpoint for the whole process, bound to the event loop that first used it.
    first = [sys.executable, "-m", "redraft", *BUILD, "--input", str(cases),
             "--output", str(output), "--limit", "1"]  # fmt: skip
    assert subprocess.run(first, capture_output=True, timeout=120).returncode == 0
    calls = len(endpoint.calls)

    assert build("--input", cases, "--output", output) == 0

    assert "1 already in" in capsys.readouterr().err
    assert [p.query for p in read_paths(output)] == ["Question one?", "Question two?"]
    # only the second query was searched the second time
    later = endpoint.calls[calls:]
    assert later and all("Question two?" in str(c.messages) for c in later)


def test_a_failing_query_does_not_stop_the_others(endpoint, tmp_path, capsys):
    cases = write_lines(tmp_path / "cases.jsonl", [case("First?"), case("Second?")])
    output = tmp_path / "paths.jsonl"
    endpoint.fail_next(1, status=500, agent="safety_judge")

    code = build("--input", cases, "--output", output, "--concurrency", "1")

    err = capsys.readouterr().err
    assert code == 1
    assert f"{cases} line 1: OpenAIAPIError: Error code: 500" in err
    assert [p.query for p in read_paths(output)] == ["Second?"]


def test_penguin_directory(endpoint, tmp_path, capsys):
    penguin = tmp_path / "penguin"
    penguin.mkdir()
    profiles = [
        {"profile_id": 0, "domain": "Health", "attributes": PROFILE},
        {"profile_id": 1, "domain": "Career", "attributes": PROFILE},
    ]
    queries = [
        {"query_id": 0, "query": "Health one?", "domain": "Health", "profile_id": 0},
        {"query_id": 1, "query": "Health two?", "domain": "Health", "profile_id": 0},
        {"query_id": 2, "query": "Career one?", "domain": "Career", "profile_id": 9},
    ]
    write_lines(penguin / "profiles.jsonl", profiles)
    write_lines(penguin / "queries.jsonl", queries)
    output = tmp_path / "paths.jsonl"

    code = build("--penguin", penguin, "--output", output, "--limit", "2")

    # domains alternate, so the first two lines are one of each domain
    assert code == 1
    assert "queries.jsonl line 3: profile_id 9 is not in profiles" in capsys.readouterr().err
    assert [(p.query, p.domain) for p in read_paths(output)] == [("Health one?", "Health")]


def test_without_a_provider_nothing_runs(tmp_path, capsys):
    cases = write_lines(tmp_path / "cases.jsonl", [case("Anything?")])

    code = build("--input", cases, "--output", tmp_path / "paths.jsonl")

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("redraft: no model provider configured")
    assert not (tmp_path / "paths.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--input", "missing.jsonl"], 2, "cannot read missing.jsonl"),
        (["--input", "cases.jsonl", "--simulations", "0"], 2, "--simulations must be at least 1"),
        (["--input", "paths.jsonl"], 1, "paths.jsonl line 1: expected a JSON object"),
    ],
)
def test_bad_input_is_one_line(endpoint, tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(tmp_path)
    write_lines(tmp_path / "cases.jsonl", [case("Anything?")])
    write_lines(tmp_path / "paths.jsonl", ["[1, 2]"])

    assert build(*args, "--output", "out.jsonl") == code

    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_output_that_is_not_a_path_library_is_left_alone(endpoint, tmp_path, capsys):
    cases = write_lines(tmp_path / "cases.jsonl", [case("Anything?")])
    output = write_lines(tmp_path / "paths.jsonl", ['{"query": "x", "best_path": ["Height"]}'])

    code = build("--input", cases, "--output", output)

    err = capsys.readouterr().err
    assert code == 2
    assert "paths.jsonl line 1" in err and "fix or remove it" in err
    assert output.read_text() == '{"query": "x", "best_path": ["Height"]}\n'
    assert endpoint.calls == []
