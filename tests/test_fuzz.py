"""Fuzzing the inputs redraft reads: RefineRequest, persona files, the CLI's JSON and YAML.

Whatever arrives, the answer is the parsed value or the project's own error naming the field
(pydantic's ValidationError, PersonaFileError with the file's name, or one line on stderr and
exit code 2 from the CLI) — never another exception, never a traceback. Example counts are
CI-sized; `--hypothesis-seed` reproduces a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from redraft.cli import main
from redraft.errors import describe_validation_error
from redraft.personas.files import PersonaFile, PersonaFileError, read_persona_file
from redraft.state import RefineRequest

CI = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
texts = st.one_of(st.text(max_size=60), st.sampled_from(["", " ", "\x00", "é" * 70_000]))
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.one_of(
                st.sampled_from(["user", "assistant", "system", "developer", "tool", ""]),
                scalars,
            ),
            "content": st.one_of(texts, scalars, st.lists(json_values, max_size=2)),
        },
        optional={"name": st.text(max_size=8), "tool_calls": json_values},
    ),
    max_size=5,
)
near_requests = st.fixed_dictionaries(
    {"messages": st.one_of(messages, json_values)},
    optional={
        "user_id": st.one_of(texts, scalars),
        "thread_id": st.one_of(texts, scalars),
        "persona": st.one_of(st.lists(texts, max_size=3), json_values),
        "knowledge": st.one_of(st.lists(texts, max_size=3), json_values),
        "draft": st.one_of(texts, scalars),
        "strategy": json_values,
        "deadline_s": json_values,
    },
)
requests = st.one_of(near_requests, json_values)


def names_fields(line: str) -> bool:
    """Every part of `describe_validation_error` is `field.path: problem`."""
    return all(part.split(": ", 1)[0].strip() for part in line.split("; ")) and ": " in line


@CI
@given(data=requests)
def test_refine_request_parses_or_names_the_field(data):
    try:
        request = RefineRequest.model_validate(data)
    except ValidationError as exc:
        assert names_fields(describe_validation_error(exc))
        return
    assert any(m.role == "user" for m in request.messages)
    again = RefineRequest.model_validate(request.model_dump())
    assert again == request


persona_data = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(texts, scalars),
        "style": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    k: st.one_of(texts, scalars) for k in ("tone", "length", "formality", "x")
                },
            ),
            json_values,
        ),
        "attributes": st.one_of(
            st.dictionaries(
                st.sampled_from(["Age", "Emotional State", "Mood", ""]),
                st.one_of(texts, st.fixed_dictionaries({"value": texts}), json_values),
                max_size=3,
            ),
            json_values,
        ),
        "facts": st.one_of(
            st.lists(
                st.one_of(
                    texts,
                    st.fixed_dictionaries(
                        {"text": texts},
                        optional={
                            "confidence": st.one_of(st.floats(), scalars),
                            "source": st.one_of(
                                st.sampled_from(["stated", "inferred", "edit", "nope"]), scalars
                            ),
                            "status": st.sampled_from(["active", "superseded", "gone"]),
                            "created_at": st.one_of(
                                st.datetimes().map(str), st.text(max_size=10), scalars
                            ),
                        },
                    ),
                    json_values,
                ),
                max_size=3,
            ),
            json_values,
        ),
        "preferences": st.one_of(
            st.lists(st.fixed_dictionaries({"preference": texts, "context": texts}), max_size=2),
            json_values,
        ),
        "unknown": json_values,
    },
)
persona_files = st.one_of(
    persona_data.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
    st.sampled_from(
        [b"", b"- a\n- b\n", b"name: [unclosed", b"\xff\xfe", b"a: !!python/name:os.system"]
    ),
)


@CI
@given(content=persona_files)
def test_a_persona_file_imports_or_names_the_file_and_field(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "persona.yaml"
        path.write_bytes(content)
        try:
            persona = read_persona_file(path)
        except PersonaFileError as exc:
            assert str(exc).startswith(f"{path}: ")
            return
    assert isinstance(persona, PersonaFile)


refine_inputs = st.one_of(
    requests.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=120),
    st.text(max_size=120).map(str.encode),
    st.sampled_from([b"", b"{", b"\xff\xfe{}", b"[]", b"null", b'{"messages": []}']),
)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def offline_cli(monkeypatch):
    """No provider, no persona memory, no knowledge base: valid requests still run the graph
    (and end without a draft, or with the handed-in one)."""
    monkeypatch.setenv("REDRAFT_MEMORY", "false")
    monkeypatch.setenv("REDRAFT_PLANNER", "all")
    monkeypatch.setenv("REDRAFT_KB", "off")


@settings(CI, max_examples=80)
@given(content=refine_inputs)
def test_redraft_refine_never_shows_a_traceback(offline_cli, content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "request.json"
        path.write_bytes(content)
        code, out, err = run_cli("refine", str(path))
    assert "Traceback" not in err
    if code == 2:  # bad input: one line naming what is wrong, nothing on stdout
        assert err.count("\n") == 1 and err.startswith("redraft: ") and out == ""
    elif code == 1:  # a valid request with no provider and no draft: no reply possible
        assert err.splitlines()[-1].startswith("redraft: no draft could be written")
    else:
        assert code == 0 and json.loads(out)["reply"]


@settings(CI, max_examples=40)
@given(content=persona_files)
def test_redraft_persona_import_never_shows_a_traceback(offline_cli, content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "persona.yaml"
        path.write_bytes(content)
        try:
            read_persona_file(path)
        except PersonaFileError:
            code, _, err = run_cli("persona", "import", "--user", "fuzz", str(path))
            assert code == 2 and err.count("\n") == 1 and err.startswith(f"redraft: {path}: ")


route_files = st.lists(
    st.one_of(
        near_requests.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    ),
    min_size=1,
    max_size=4,
)


@settings(CI, max_examples=30)
@given(lines=route_files)
def test_redraft_route_reports_each_bad_line(lines):
    """`redraft route`: one output line per valid case, one stderr line per bad one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        code, out, err = run_cli("route", "--input", str(path))
    assert "Traceback" not in err
    valid = 0
    for line in lines:
        try:
            RefineRequest.model_validate(json.loads(line))
            valid += 1
        except (ValueError, ValidationError):
            pass
    assert len(out.splitlines()) == valid
    assert code == (0 if valid == len(lines) else 1)
