"""The evaluation dataset: one JSON object per line, one turn to reply to per object.

Schema (unknown fields are an error, so typos do not pass silently):

- `id` (string, optional): stable name of the case; results are keyed by it so an interrupted
  run resumes where it stopped. Default: a hash of the case's content.
- `history` (list of `{"role", "content"}`, optional): the conversation before the query.
- `persona` (list of strings, optional): facts about the user.
- `knowledge` (list of strings, optional): evidence passages.
- `query` (string): the user message to reply to.
- `reference` (string, optional): a reference reply, shown to the judges as one good answer.
- `profile` (object of strings, optional): the user's full profile (e.g. PENGUIN's ten
  attributes), shown only to the judges — the chatbot sees `persona`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from redraft.agents.judge import JudgeContext
from redraft.errors import RedraftError
from redraft.parsing import JSONLimitError, parse_json
from redraft.state import Message

SAMPLE = "sample"
"""`--dataset sample`: the small hand-written sample shipped with redraft, for smoke runs."""


def sample_path() -> Path:
    return Path(str(files("redraft").joinpath("data/eval_sample.jsonl")))


class DatasetError(RedraftError, ValueError):
    """A dataset that cannot be read; the message names the file and the place."""


class EvalCase(BaseModel):
    """One turn to reply to, with what the chatbot and the judges may know."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field("", max_length=256)
    history: list[Message] = Field(default_factory=list)
    persona: list[str] = Field(default_factory=list)
    knowledge: list[str] = Field(default_factory=list)
    query: str = Field(min_length=1)
    reference: str | None = None
    profile: dict[str, str] | None = None

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty")
        return value

    def with_default_id(self) -> EvalCase:
        """The case with an id: its own, else a hash of its content (stable across runs)."""
        if self.id:
            return self
        content = json.dumps(self.model_dump(exclude={"id"}), sort_keys=True, ensure_ascii=False)
        return self.model_copy(
            update={"id": "c-" + hashlib.sha256(content.encode()).hexdigest()[:12]}
        )

    def messages(self) -> list[dict[str, str]]:
        """The conversation up to and including the query."""
        return [m.model_dump() for m in self.history] + [{"role": "user", "content": self.query}]

    def request(self) -> dict[str, Any]:
        """A RefineRequest for this case."""
        return {"messages": self.messages(), "persona": self.persona, "knowledge": self.knowledge}

    def judge_context(self) -> JudgeContext:
        return JudgeContext(
            history=self.messages(),
            persona=self.persona,
            knowledge=self.knowledge,
            reference=self.reference,
            profile=self.profile,
        )


def describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'case'}: {item['msg']}"
        for item in error.errors()
    )


def read_jsonl(
    path: Path, *, not_an_object: str = "expected a JSON object"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line numbers (blank lines skipped); a file
    that cannot be read or a bad line is a DatasetError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {number}: invalid JSON: {exc.msg}") from exc
        except JSONLimitError as exc:
            raise DatasetError(f"{path} line {number}: {exc}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {number}: {not_an_object}")
        yield number, row


def read_cases(path: Path) -> list[EvalCase]:
    """Read a dataset in redraft's JSONL schema; any bad line is a DatasetError naming it."""
    cases: list[EvalCase] = []
    for number, data in read_jsonl(path, not_an_object="a case must be a JSON object"):
        try:
            cases.append(EvalCase.model_validate(data))
        except ValidationError as exc:
            raise DatasetError(f"{path} line {number}: {describe(exc)}") from exc
    return unique_ids(cases, path)


def unique_ids(cases: Iterable[EvalCase], source: Path) -> list[EvalCase]:
    """Give every case an id and refuse duplicates (results are keyed by id)."""
    seen: dict[str, int] = {}
    out = []
    for index, case in enumerate(cases, 1):
        case = case.with_default_id()
        if case.id in seen:
            raise DatasetError(
                f"{source}: case {index} has the same id {case.id!r} as case {seen[case.id]}"
            )
        seen[case.id] = index
        out.append(case)
    return out


def write_cases(cases: Iterable[EvalCase], path: Path) -> int:
    """Write cases as JSONL (the schema above), creating the file's directory if need be;
    returns how many were written."""
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for case in cases:
            out.write(case.model_dump_json(exclude_none=True) + "\n")
            count += 1
    return count
