"""`redraft safety build-paths`: RAISE's offline stage, on your endpoint and your queries.

For each query with a known user profile, a Monte-Carlo tree search (`path_search`) looks for the
order in which to ask the profile's attributes. The reward of a set of attributes is the PENGUIN
safety judge's mean score (1–5) of a reply that the responding agent writes knowing only those
attributes (as persona facts), judged against the user's whole profile. Each query's best order
becomes one line of a path library, which `safety_paths` in the config adds to the shipped one.

Input lines: `{"query": str, "profile": {attribute: value}, "domain"?: str}`, or PENGUIN's
queries and profiles (`--penguin DIR`). Output lines: `{"query", "best_path", "domain"}`, written
as each query finishes, so an interrupted run resumes: queries already in the output are skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from redraft.agents.judge import JudgeContext
from redraft.agents.responder import write_draft
from redraft.config import RefinerConfig
from redraft.errors import describe_validation_error
from redraft.eval.datasets import read_jsonl
from redraft.llm.calls import Models
from redraft.safety.critic import attribute_facts
from redraft.safety.judge import judge_safety
from redraft.safety.path_search import SearchResult, search_path
from redraft.safety.paths import AcquisitionPath, read_paths
from redraft.state import PENGUIN_ATTRIBUTES, Domain, PenguinAttribute


class PathCase(BaseModel):
    """One query and the profile of the user who asks it (the judge sees all of it)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    profile: dict[PenguinAttribute, str] = Field(min_length=1)
    domain: Domain | None = None

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty")
        return value

    @field_validator("profile")
    @classmethod
    def _values_not_blank(cls, profile: dict[str, str]) -> dict[str, str]:
        blank = [name for name, value in profile.items() if not value.strip()]
        if blank:
            raise ValueError(f"empty value for {', '.join(blank)}")
        return profile

    def attributes(self) -> list[PenguinAttribute]:
        """The profile's attributes, in PENGUIN's order (so searches are reproducible)."""
        return sorted(self.profile, key=PENGUIN_ATTRIBUTES.index)


@dataclass
class Line:
    """One input line: where it is, and its case or what is wrong with it."""

    where: str
    case: PathCase | None = None
    error: str | None = None


def parse_case(where: str, data: Any) -> Line:
    if not isinstance(data, dict):
        return Line(where, error="expected a JSON object")
    try:
        return Line(where, case=PathCase.model_validate(data))
    except ValidationError as exc:
        return Line(where, error=describe_validation_error(exc))


def read_cases(path: Path) -> list[Line]:
    """The lines of a cases file; a bad line is kept as an error, the others still count.

    Raises OSError when the file cannot be read.
    """
    lines = []
    text = path.read_text(encoding="utf-8")
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            lines.append(Line(where, error=f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        lines.append(parse_case(where, data))
    return lines


def penguin_cases(directory: Path) -> list[Line]:
    """PENGUIN's queries with their profiles (`profiles.jsonl`, `queries.jsonl`), alternating
    between domains so that the first N (`--limit`) cover every domain.

    Raises DatasetError when a file cannot be read or is not JSON Lines.
    """
    profiles = {
        row.get("profile_id"): row.get("attributes")
        for _, row in read_jsonl(directory / "profiles.jsonl")
    }
    queries = directory / "queries.jsonl"
    by_domain: dict[str, list[Line]] = defaultdict(list)
    for number, row in read_jsonl(queries):
        where = f"{queries} line {number}"
        profile = profiles.get(row.get("profile_id"))
        if profile is None:
            line = Line(where, error=f"profile_id {row.get('profile_id')!r} is not in profiles")
        else:
            data = {"query": row.get("query"), "profile": profile, "domain": row.get("domain")}
            line = parse_case(where, data)
        by_domain[str(row.get("domain"))].append(line)
    interleaved = chain.from_iterable(zip_longest(*by_domain.values()))
    return [line for line in interleaved if line is not None]


class PathBuilder:
    """Finds each query's best acquisition path with the configured responder and judge.

    `model` overrides the configured models (one for both roles, or role → model). The judge
    runs at temperature 0, so that a set of attributes gets a steady reward.
    """

    def __init__(
        self,
        config: RefinerConfig,
        model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
        *,
        depth: int = 4,
        simulations: int = 40,
        seed: int = 0,
    ) -> None:
        models = Models(model)
        self.responder = models.for_role("responder", config)
        self.judge = models.for_role("judge", config.model_copy(update={"temperature": 0.0}))
        self.method = config.structured_output
        self.depth, self.simulations, self.seed = depth, simulations, seed

    async def reward(self, case: PathCase, known: frozenset[str]) -> float:
        """The PENGUIN score of a reply written knowing only the `known` attributes."""
        history = [{"role": "user", "content": case.query}]
        facts = attribute_facts({a: case.profile[a] for a in case.attributes() if a in known})
        reply = await write_draft(self.responder, history, facts, [])
        if not reply:
            raise ValueError("the responding model returned an empty reply")
        profile: dict[str, str] = {name: value for name, value in case.profile.items()}
        context = JudgeContext(history=history, profile=profile)
        verdict = await judge_safety(self.judge, context, reply, method=self.method)
        return verdict.penguin_score

    async def search(self, case: PathCase) -> SearchResult[PenguinAttribute]:
        async def reward(known: frozenset[str]) -> float:
            return await self.reward(case, known)

        return await search_path(
            case.attributes(),
            reward,
            depth=self.depth,
            simulations=self.simulations,
            seed=self.seed,
        )


@dataclass
class Outcome:
    """What a run did, line by line."""

    written: int = 0
    already_done: int = 0
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)


Progress = Callable[[str], None]


def build_paths(
    lines: Sequence[Line],
    output: Path,
    builder: PathBuilder,
    *,
    concurrency: int = 4,
    progress: Progress = lambda message: None,
) -> Outcome:
    """Search a path for every good line not yet in `output`, appending each as it finishes.

    Bad lines and queries whose search failed are listed in `Outcome.failed`; the others are
    still done. Raises ValueError when `output` exists but is not a path library.
    """
    outcome = Outcome(failed=[f"{line.where}: {line.error}" for line in lines if line.error])
    stored = {path.query for path in read_paths(output)} if output.exists() else set()
    todo: list[Line] = []
    queued: set[str] = set()
    for line in lines:
        if line.case is None:
            continue
        if line.case.query in stored:
            outcome.already_done += 1
        elif line.case.query in queued:
            outcome.duplicates += 1
        else:
            todo.append(line)
            queued.add(line.case.query)
    if not todo:
        return outcome
    output.parent.mkdir(parents=True, exist_ok=True)
    unfinished = output.exists() and not output.read_bytes().endswith(b"\n")
    with output.open("a", encoding="utf-8") as out:
        if unfinished and out.tell():
            out.write("\n")  # a last line without its newline: start on a fresh line

        def write(path: AcquisitionPath) -> None:
            out.write(json.dumps(path.model_dump(), ensure_ascii=False) + "\n")
            out.flush()

        asyncio.run(search_all(todo, builder, write, outcome, concurrency, progress))
    return outcome


async def search_all(
    todo: Sequence[Line],
    builder: PathBuilder,
    write: Callable[[AcquisitionPath], None],
    outcome: Outcome,
    concurrency: int,
    progress: Progress,
) -> None:
    """`concurrency` workers take the lines in turn; each path is written as it is found."""
    queue: asyncio.Queue[Line] = asyncio.Queue()
    for line in todo:
        queue.put_nowait(line)

    async def worker() -> None:
        while not queue.empty():
            line = queue.get_nowait()
            assert line.case is not None
            try:
                found = await builder.search(line.case)
            except Exception as exc:
                failure = f"{line.where}: {type(exc).__name__}: {exc}"
                outcome.failed.append(failure)
                progress(f"FAILED {failure}")
                continue
            write(
                AcquisitionPath(
                    query=line.case.query, best_path=found.best_path, domain=line.case.domain
                )
            )
            outcome.written += 1
            score = found.rewards[frozenset(found.best_path)]
            progress(
                f"{line.where}: {' → '.join(found.best_path)} "
                f"(score {score:.2f}; {len(found.rewards)} attribute sets judged)"
            )

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
