"""Persona files and the `redraft persona` commands: all-or-nothing imports, exports that import
again, one-line errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from redraft.cli import main
from redraft.personas.files import PersonaFileError, read_persona_file

EXAMPLES = sorted((Path(__file__).parent.parent / "personas").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_personas_are_valid(path):
    persona = read_persona_file(path)
    assert persona.name and persona.facts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("facts:\n  - ok\n  - text: ''\n", "facts.1.text: String should have at least 1 char"),
        ("attributes:\n  Star Sign: Leo\n", "attributes.Star Sign.[key]: Input should be 'Age'"),
        ("style:\n  colour: blue\n", "style.colour: Extra inputs are not permitted"),
        ("facts:\n  - text: x\n    confidence: 3\n", "facts.0.confidence: Input should be less"),
        ("name: [unclosed\n", "invalid YAML at line 2 column 1"),
        ("- just\n- a list\n", "a persona file must be a mapping"),
    ],
)
def test_invalid_files_name_the_file_and_the_field(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PersonaFileError) as info:
        read_persona_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_show_export_forget(capsys, tmp_path, local_embeddings):
    sam = next(p for p in EXAMPLES if p.name == "sam.yaml")
    code, out, _ = run(capsys, "persona", "import", str(sam), "--user", "sam.k")
    assert code == 0 and "4 facts" in out and "1 edit preferences" in out

    code, out, _ = run(capsys, "persona", "show", "sam.k")
    assert code == 0
    assert "The user writes most of their code in Python" in out
    assert "[stated, confidence 1.00, 2025-05-02 10:00]" in out  # the file's own time
    assert "Show code first" in out and "Profession: Computer science student" in out

    code, exported, _ = run(capsys, "persona", "export", "sam.k")
    data = yaml.safe_load(exported)
    assert data["name"] == "Sam" and len(data["facts"]) == 4 and data["preferences"]
    assert {f["source"] for f in data["facts"]} == {"imported", "stated"}

    # an export imports again, and importing twice adds nothing twice
    copy = tmp_path / "sam-export.yaml"
    copy.write_text(exported, encoding="utf-8")
    assert run(capsys, "persona", "import", str(copy), "--user", "sam2")[0] == 0
    assert yaml.safe_load(run(capsys, "persona", "export", "sam2")[1])["facts"] == data["facts"]
    code, out, _ = run(capsys, "persona", "import", str(sam), "--user", "sam.k")
    assert "0 facts (4 already known)" in out

    code, out, _ = run(capsys, "persona", "forget", "sam.k")
    assert code == 0 and "4 facts" in out
    data = yaml.safe_load(run(capsys, "persona", "export", "sam.k")[1])
    assert data.get("facts") == [] and data.get("name") is None
    assert len(yaml.safe_load(run(capsys, "persona", "export", "sam2")[1])["facts"]) == 4


def test_an_invalid_file_imports_nothing(capsys, tmp_path, local_embeddings):
    path = tmp_path / "half.yaml"
    path.write_text(
        "name: Half\nfacts:\n  - The user is valid.\n"
        "  - text: The user is not.\n    source: gossip\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "persona", "import", str(path), "--user", "h")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"redraft: {path}: facts.1.source: Input should be")
    data = yaml.safe_load(run(capsys, "persona", "export", "h")[1])
    assert data.get("facts") == [] and data.get("name") is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import", "missing.yaml", "--user", "u"], "missing.yaml: cannot read"),
        (["import", "personas/maya.yaml", "--user", "default"], "has no memory"),
        (["show", ""], "user id must have 1 to 256 characters"),
    ],
)
def test_bad_command_input_is_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, "persona", *argv)
    assert code == 2 and message in err and err.count("\n") == 1
