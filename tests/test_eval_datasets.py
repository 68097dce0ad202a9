"""The evaluation schema and the converters, on small hand-written samples of each format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from redraft import Refiner, RefinerConfig
from redraft.eval import DatasetError, EvalCase, load_dataset, read_cases
from redraft.eval.converters import detect_format

# The shared PENGUIN data sits next to the repository (../shared/data/penguin in CI).
PENGUIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "penguin"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def as_json(path: Path, data: object) -> Path:
    return write(path, json.dumps(data))


# ── redraft's JSONL schema ───────────────────────────────────────────────────────────


def test_shipped_sample_is_valid_and_every_case_is_a_valid_request():
    cases = load_dataset("sample")
    assert len(cases) >= 8
    assert len({c.id for c in cases}) == len(cases)
    refiner = Refiner(RefinerConfig())
    for case in cases:
        request = refiner.validate(case.request())
        assert request.messages[-1].content == case.query
    assert any(c.knowledge for c in cases) and any(c.persona for c in cases)
    assert any(c.history for c in cases) and any(c.profile for c in cases)


def test_read_cases_fills_stable_ids(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"query": "hi"}\n\n{"id": "mine", "query": "yo"}\n')
    first, second = read_cases(path)
    assert first.id.startswith("c-") and second.id == "mine"
    assert read_cases(path)[0].id == first.id  # the same content, the same id


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{broken", "line 2: invalid JSON"),
        ("[1]", "line 2: a case must be a JSON object"),
        ('{"persona": []}', "line 2: query: Field required"),
        ('{"query": "  "}', "line 2: query: Value error, query must not be empty"),
        ('{"query": "x", "histroy": []}', "line 2: histroy: Extra inputs"),
        ('{"query": "x", "history": [{"role": "bot", "content": "a"}]}', "line 2: history.0.role"),
        ('{"query": "x", "persona": "likes tea"}', "line 2: persona: Input should be a valid list"),
    ],
)
def test_bad_lines_are_named(tmp_path, line, words):
    path = write(tmp_path / "d.jsonl", '{"query": "fine"}\n' + line + "\n")
    with pytest.raises(DatasetError) as info:
        read_cases(path)
    assert str(info.value).startswith(str(path))
    assert words in str(info.value)


def test_duplicate_ids_are_refused(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"id": "a", "query": "x"}\n{"id": "a", "query": "y"}\n')
    with pytest.raises(DatasetError, match="case 2 has the same id 'a' as case 1"):
        read_cases(path)


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")


# ── PersonaChat ──────────────────────────────────────────────────────────────────────

PERSONACHAT_TXT = """\
1 your persona: i keep bees in my garden.
2 your persona: i work night shifts at a bakery.
3 partner's persona: i am learning the cello.
4 hello there , how are you ?\tbusy ! i start baking at midnight .\t\tnice .|busy !
5 what do you bake ?\tmostly rye loaves . do you bake ?\t\tno .|mostly rye .
1 your persona: i have two cats.
2 __SILENCE__\thi , anyone there ? my cats woke me up .
3 ha , cats do that . mine is a dog though .\tdogs are great too !
"""


def test_personachat_parlai_text(tmp_path):
    cases = load_dataset(write(tmp_path / "valid_both_original.txt", PERSONACHAT_TXT))
    assert [c.id for c in cases] == ["personachat-1-1", "personachat-1-2", "personachat-2-2"]
    first, second, third = cases
    assert first.persona == ["i keep bees in my garden.", "i work night shifts at a bakery."]
    assert first.history == [] and first.query.startswith("hello there")
    assert first.reference == "busy ! i start baking at midnight ."
    assert [m.role for m in second.history] == ["user", "assistant"]
    assert second.query == "what do you bake ?"
    # the bot spoke first: no case for the silence, its line stays in the history
    assert [m.model_dump() for m in third.history] == [
        {"role": "assistant", "content": "hi , anyone there ? my cats woke me up ."}
    ]
    assert third.persona == ["i have two cats."]


def test_personachat_partner_persona(tmp_path):
    path = write(tmp_path / "valid_both_original.txt", PERSONACHAT_TXT)
    cases = load_dataset(path, persona="partner", turns="last")
    assert [c.id for c in cases] == ["personachat-1-2", "personachat-2-2"]
    assert cases[0].persona == ["i am learning the cello."]


def test_personachat_partner_persona_needs_both_files(tmp_path):
    text = "1 your persona: i like rain.\n2 hi\thello\n"
    with pytest.raises(DatasetError, match="no partner's persona"):
        load_dataset(write(tmp_path / "valid_self_original.txt", text), persona="partner")


def test_personachat_bad_line_is_named(tmp_path):
    path = write(tmp_path / "x.txt", "1 your persona: a.\n2 only one field\n")
    with pytest.raises(DatasetError, match=r"x.txt line 2: expected the partner's utterance"):
        load_dataset(path)


PERSONACHAT_JSON = {
    "train": [],
    "valid": [
        {
            "personality": ["i paint murals.", "i grew up by the sea."],
            "utterances": [
                {
                    "history": ["__ SILENCE __"],
                    "candidates": ["wrong one .", "hey ! just back from painting a wall ."],
                },
                {
                    "history": [
                        "__ SILENCE __",
                        "hey ! just back from painting a wall .",
                        "a whole wall ? what was on it ?",
                    ],
                    "candidates": ["no .", "a big blue wave , like home ."],
                },
            ],
        }
    ],
}


def test_personachat_hugging_face_json(tmp_path):
    path = as_json(tmp_path / "personachat_self_original.json", PERSONACHAT_JSON)
    assert detect_format(path) == "personachat"
    (case,) = load_dataset(path)
    assert case.id == "personachat-valid-1-2"
    assert case.query == "a whole wall ? what was on it ?"
    assert [m.model_dump() for m in case.history] == [
        {"role": "assistant", "content": "hey ! just back from painting a wall ."}
    ]
    assert case.reference == "a big blue wave , like home ."
    assert case.persona == ["i paint murals.", "i grew up by the sea."]
    with pytest.raises(DatasetError, match="no split 'test'"):
        load_dataset(path, split="test")


# ── FoCus ────────────────────────────────────────────────────────────────────────────

FOCUS = {
    "data": [
        {
            "dialogID": "lighthouse-7",
            "persona": ["I collect old maps.", "I am afraid of heights."],
            "knowledge": ["Long article text about the lighthouse ..."],
            "landmark_link": "https://example.org/lighthouse",
            "utterance": [
                {
                    "dialogue1": [
                        "What is this tall white tower?",
                        "It is a lighthouse from 1858, still guiding ships at night.",
                    ],
                    "persona_candidate": ["I collect old maps.", "I am afraid of heights."],
                    "persona_grounding": [False, False],
                    "knowledge_candidates": [
                        "Unrelated passage.",
                        "The lighthouse was lit in 1858.",
                    ],
                    "knowledge_answer_index": 1,
                },
                {
                    "dialogue2": [
                        "What is this tall white tower?",
                        "It is a lighthouse from 1858, still guiding ships at night.",
                        "Could I climb to the top?",
                    ],
                    "knowledge_candidates": ["The gallery is reached by 210 steps.", "Other."],
                },
            ],
        }
    ]
}


def test_focus(tmp_path):
    path = as_json(tmp_path / "valid_focus.json", FOCUS)
    assert detect_format(path) == "focus"
    first, second = load_dataset(path)
    assert first.id == "focus-lighthouse-7-1"
    assert first.persona == ["I collect old maps.", "I am afraid of heights."]
    assert first.history == [] and first.query == "What is this tall white tower?"
    assert first.reference.startswith("It is a lighthouse")
    assert first.knowledge == ["The lighthouse was lit in 1858."]  # the grounding passage
    # a turn without the machine's answer (test-set style): no reference, all candidates
    assert second.reference is None and second.query == "Could I climb to the top?"
    assert [m.role for m in second.history] == ["user", "assistant"]
    assert second.knowledge == ["The gallery is reached by 210 steps.", "Other."]


def test_focus_missing_dialogue_key_is_named(tmp_path):
    data = {"data": [{"dialogID": "d", "persona": [], "utterance": [{"dialogue9": ["x"]}]}]}
    with pytest.raises(DatasetError, match=r"data\[0\].utterance\[0\]: missing 'dialogue1'"):
        load_dataset(as_json(tmp_path / "f.json", data), "focus")


# ── INSCIT ───────────────────────────────────────────────────────────────────────────

INSCIT = {
    "garden_level1_dial3": {
        "seedArticle": {"title": "Composting", "topic": "garden", "level": 1},
        "turns": [
            {
                "context": ["Can I compost citrus peels?"],
                "prevEvidence": [],
                "labels": [
                    {
                        "responseType": "directAnswer",
                        "response": "Yes, in moderation; they break down slowly.",
                        "evidence": [
                            {
                                "passage_id": "Composting:4",
                                "passage_text": "Citrus peels decompose slowly.",
                                "passage_titles": ["Composting", "Materials"],
                            }
                        ],
                    },
                    {
                        "responseType": "directAnswer",
                        "response": "You can, in small amounts.",
                        "evidence": [
                            {
                                "passage_id": "Composting:4",
                                "passage_text": "Citrus peels decompose slowly.",
                                "passage_titles": ["Composting", "Materials"],
                            },
                            {"passage_id": "Peel:1", "passage_text": "Peel is the outer skin."},
                        ],
                    },
                ],
            },
            {
                "context": [
                    "Can I compost citrus peels?",
                    "Yes, in moderation; they break down slowly.",
                    "Which worms work best?",
                ],
                "labels": [],
            },
        ],
    }
}


def test_inscit(tmp_path):
    path = as_json(tmp_path / "dev.json", INSCIT)
    assert detect_format(path) == "inscit"
    first, second = load_dataset(path)
    assert first.id == "inscit-garden_level1_dial3-1"
    assert first.reference == "Yes, in moderation; they break down slowly."
    assert first.knowledge == [
        "Composting > Materials: Citrus peels decompose slowly.",
        "Peel is the outer skin.",
    ]
    assert second.query == "Which worms work best?" and second.reference is None
    assert second.knowledge == []
    assert [m.role for m in second.history] == ["user", "assistant"]
    (last,) = load_dataset(path, turns="last")
    assert last.id == second.id


def test_inscit_bad_turn_is_named(tmp_path):
    data = {"conv": {"turns": [{"context": "not a list"}]}}
    with pytest.raises(DatasetError, match=r"'conv' turns\[0\].context: expected a list"):
        load_dataset(as_json(tmp_path / "i.json", data), "inscit")


# ── PENGUIN ──────────────────────────────────────────────────────────────────────────


def penguin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "penguin"
    folder.mkdir()
    profiles = [
        {"profile_id": 0, "domain": "Career", "scenario": "Layoff",
         "attributes": {"Age": "45-54 years", "Emotional State": "Anxious about money."}},
        {"profile_id": 1, "domain": "Health", "scenario": "Diagnosis",
         "attributes": {"Age": "18-24 years", "Emotional State": "Scared."}},
    ]  # fmt: skip
    queries = [
        {
            "query_id": 0,
            "query": "How do I restart my career?",
            "domain": "Career",
            "profile_id": 0,
        },
        {
            "query_id": 1,
            "query": "Should I retrain at my age?",
            "domain": "Career",
            "profile_id": 0,
        },
        {"query_id": 2, "query": "How do I tell my parents?", "domain": "Health", "profile_id": 1},
    ]
    write(folder / "profiles.jsonl", "".join(json.dumps(p) + "\n" for p in profiles))
    write(folder / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in queries))
    return folder


def test_penguin_alternates_domains_and_hides_the_profile(tmp_path):
    folder = penguin_dir(tmp_path)
    assert detect_format(folder) == "penguin"
    cases = load_dataset(folder)
    assert [c.id for c in cases] == ["penguin-0", "penguin-2", "penguin-1"]
    assert cases[0].persona == [] and cases[0].history == []
    assert cases[0].profile == {"Age": "45-54 years", "Emotional State": "Anxious about money."}
    revealed = load_dataset(folder, reveal_profile=True)
    assert revealed[0].persona == ["Age: 45-54 years", "Emotional State: Anxious about money."]


def test_penguin_unknown_profile_is_named(tmp_path):
    folder = penguin_dir(tmp_path)
    with (folder / "queries.jsonl").open("a") as f:
        f.write(json.dumps({"query_id": 9, "query": "x", "profile_id": 42}) + "\n")
    with pytest.raises(DatasetError, match=r"queries.jsonl line 4: profile_id 42"):
        load_dataset(folder)


@pytest.mark.skipif(not PENGUIN.exists(), reason=f"the shared PENGUIN data is not at {PENGUIN}")
def test_the_shared_penguin_data_converts():
    cases = load_dataset(PENGUIN)
    assert len(cases) == 7000
    assert all(len(c.profile) == 10 for c in cases)
    first_seven = {c.id for c in cases[:7]}
    domains = {
        json.loads(line)["domain"]
        for line in (PENGUIN / "queries.jsonl").read_text().splitlines()
        if f"penguin-{json.loads(line)['query_id']}" in first_seven
    }
    assert len(domains) == 7  # --limit 7 covers every domain


# ── detection and the convert command ────────────────────────────────────────────────


def test_unknown_json_shape_asks_for_a_format(tmp_path):
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        load_dataset(as_json(tmp_path / "x.json", {"hello": 1}))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "redraft", *args], capture_output=True, text=True, timeout=120
    )


def test_convert_command_writes_jsonl(tmp_path):
    source = as_json(tmp_path / "dev.json", INSCIT)
    target = tmp_path / "inscit.jsonl"
    done = run_cli("convert", "inscit", str(source), "-o", str(target))
    assert done.returncode == 0, done.stderr
    cases = read_cases(target)
    assert [c.id for c in cases] == [c.id for c in load_dataset(source)]
    assert isinstance(cases[0], EvalCase) and cases[0].knowledge


def test_convert_command_bad_input_is_one_line(tmp_path):
    source = write(tmp_path / "broken.json", "{nope")
    done = run_cli("convert", "focus", str(source))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "broken.json: not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


# ── hostile files: still a DatasetError naming the file and line ─────────────────────

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_line_is_named(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"query": "fine"}\n{"query": ' + DEEP + "}\n")
    with pytest.raises(DatasetError) as info:
        read_cases(path)
    assert str(info.value) == f"{path} line 2: invalid JSON: nested too deeply"


def test_a_deeply_nested_json_dataset_is_named(tmp_path):
    path = write(tmp_path / "dev.json", '{"data": ' + DEEP + "}")
    with pytest.raises(DatasetError) as info:
        load_dataset(path, "focus")
    assert str(info.value) == f"{path}: invalid JSON: nested too deeply"
    with pytest.raises(DatasetError):
        load_dataset(path)  # telling the format reads it too


def test_a_deeply_nested_penguin_line_is_named(tmp_path):
    directory = tmp_path / "penguin"
    directory.mkdir()
    write(directory / "profiles.jsonl", DEEP + "\n")
    write(directory / "queries.jsonl", "")
    with pytest.raises(DatasetError) as info:
        load_dataset(directory)
    assert (
        str(info.value) == f"{directory / 'profiles.jsonl'} line 1: invalid JSON: nested too deeply"
    )


@pytest.mark.parametrize("name", ["d.jsonl", "d.txt"])
def test_a_file_that_is_not_utf8_is_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'{"query": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        load_dataset(path)


def test_convert_creates_the_output_directory(tmp_path):
    source = as_json(tmp_path / "dev.json", INSCIT)
    target = tmp_path / "new" / "dir" / "inscit.jsonl"
    done = run_cli("convert", "inscit", str(source), "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert [c.id for c in read_cases(target)] == [c.id for c in load_dataset(source)]


def test_convert_to_an_unwritable_path_is_one_line(tmp_path, capsys):
    from redraft.cli import main

    source = as_json(tmp_path / "dev.json", INSCIT)
    assert main(["convert", "inscit", str(source), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"redraft: cannot write {tmp_path}: Is a directory\n"
