"""`redraft route`: the JSONL contract tools and benchmarks rely on, bad lines included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from redraft.cli import main
from tests.conftest import assistant, user

CONTRACT = {"aspects", "scores", "sensitive", "domain", "reasons", "ms"}
ASPECTS = {"factuality", "personalization", "coherence", "safety"}

CASES = [
    {"messages": [user("hey, how's it going?")], "draft": "Great, thanks!"},
    {
        "messages": [user("When was the Eiffel Tower finished?")],
        "knowledge": ["The Eiffel Tower was completed in 1889."],
        "draft": "It was finished in 1899.",
    },
    {"messages": [user("I was fired today after ten years at the company.")]},
    {
        "messages": [
            user("What's the capital of Australia?"),
            assistant("Canberra."),
            user("And what's its population?"),
        ],
        "persona": ["Lives in Perth."],
    },
]


def route(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "redraft", "route", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
    )


def jsonl(rows: list) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_every_line_is_routed_in_order_with_the_contract_fields(tmp_path: Path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(jsonl(CASES))
    out = tmp_path / "out.jsonl"

    done = route("--input", str(cases), "--output", str(out))

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(CASES)
    for line in lines:
        assert set(line) == CONTRACT
        assert set(line["aspects"]) <= ASPECTS
        assert set(line["scores"]) == set(line["reasons"]) == ASPECTS
        assert isinstance(line["ms"], float) and line["ms"] >= 0
    chit_chat, factual, sensitive, follow_up = lines
    assert chit_chat["aspects"] == [] and not chit_chat["sensitive"]
    assert factual["aspects"] == ["factuality"]
    assert sensitive["sensitive"] and sensitive["domain"] == "Career"
    assert "safety" in sensitive["aspects"]
    assert "coherence" in follow_up["aspects"] and follow_up["domain"] is None
    stderr = done.stderr.decode()
    assert stderr.count("router loaded") == 1 and "Traceback" not in stderr


def test_malformed_lines_are_named_and_the_others_still_routed(tmp_path: Path):
    lines = [
        json.dumps(CASES[0]),
        "{not json",
        json.dumps({"messages": [{"role": "bot", "content": "hi"}]}),
        json.dumps(CASES[2]),
        "",
        json.dumps(["a", "list"]),
        json.dumps({"messages": [user("hi")], "knowlege": ["typo"]}),
        json.dumps({"messages": [assistant("only the assistant")]}),
        json.dumps(CASES[1]),
    ]
    cases = tmp_path / "cases.jsonl"
    cases.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")

    done = route("--input", str(cases))

    assert done.returncode == 1
    outputs = [json.loads(line) for line in done.stdout.decode().splitlines()]
    # exactly one output per valid line (1, 4, 7, 9), in input order
    assert len(outputs) == 4
    assert outputs[0]["aspects"] == [] and outputs[1]["domain"] == "Career"
    assert outputs[3]["aspects"] == ["factuality"]
    stderr = done.stderr.decode().splitlines()
    assert stderr[0].startswith("redraft: router loaded")  # loaded before the first line
    notes = {int(line.split(" line ")[1].split(":")[0]): line for line in stderr[1:-1]}
    assert sorted(notes) == [2, 3, 5, 6, 7, 8, 10]
    assert "invalid JSON" in notes[2]
    assert "messages.0.role" in notes[3]
    assert "empty line" in notes[5]
    assert "JSON object" in notes[6]
    assert notes[7].endswith("ignored field(s): knowlege")  # routed, and the typo is named
    assert "user message" in notes[8]
    assert "UTF-8" in notes[10]
    assert stderr[-1] == "redraft: 6 line(s) of " + str(cases) + " could not be routed (see above)"
    assert "Traceback" not in done.stderr.decode()


def test_a_datasets_own_fields_are_named_once_and_every_line_routed(tmp_path: Path):
    """Tools keep ids and labels next to the contract's fields: not errors."""
    cases = [{**case, "id": n, "label": "x"} for n, case in enumerate(CASES)]
    done = route(stdin=jsonl(cases).encode())
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.decode().splitlines()) == len(CASES)
    notes = [line for line in done.stderr.decode().splitlines() if "ignored" in line]
    assert notes == ["redraft: stdin line 1: ignored field(s): id, label"]


def test_stdin_to_stdout(tmp_path: Path):
    done = route(stdin=jsonl(CASES[:1]).encode())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["aspects"] == []


def test_a_missing_input_file_is_bad_input(tmp_path: Path, capsys):
    assert main(["route", "--input", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"redraft: cannot open {tmp_path / 'nope.jsonl'}: No such file or directory"
    )


def test_missing_embedding_extra_is_named(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr("redraft.embeddings.local_model_installed", lambda: False)
    examples = tmp_path / "examples.jsonl"  # a config no earlier test built a router for
    examples.write_text(json.dumps({"text": "hello", "label": "chitchat"}) + "\n")
    monkeypatch.setenv("REDRAFT_EXTRA_EXAMPLES_FILE", str(examples))
    cases = tmp_path / "cases.jsonl"
    cases.write_text(jsonl(CASES[:1]))
    assert main(["route", "--input", str(cases)]) == 1
    assert "redraft[embeddings]" in capsys.readouterr().err


def test_a_bad_examples_file_is_bad_input(tmp_path: Path, monkeypatch, capsys):
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "hi", "label": "greeting"}\n')
    monkeypatch.setenv("REDRAFT_EXTRA_EXAMPLES_FILE", str(examples))
    assert main(["route", "--input", "-"]) == 2
    err = capsys.readouterr().err
    assert "examples.jsonl line 1: label" in err and "Traceback" not in err


def test_a_deeply_nested_line_is_malformed_and_the_others_still_routed():
    deep = "[" * 100_000 + "]" * 100_000
    deep_object = '{"messages": ' * 50_000 + "1" + "}" * 50_000
    lines = [json.dumps(CASES[0]), deep, deep_object, json.dumps(CASES[2])]

    done = route(stdin=("\n".join(lines) + "\n").encode())

    assert done.returncode == 1
    outputs = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(outputs) == 2 and outputs[1]["domain"] == "Career"
    stderr = done.stderr.decode().splitlines()
    assert stderr[1:] == [
        "redraft: stdin line 2: invalid JSON: nested too deeply",
        "redraft: stdin line 3: invalid JSON: nested too deeply",
        "redraft: 2 line(s) of stdin could not be routed (see above)",
    ]
