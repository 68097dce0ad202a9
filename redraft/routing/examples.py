"""The router's labelled examples: the project's own (package data) plus the user's.

Each example is one turn and what kind of request it is: `chitchat`, `knowledge` (asks for
facts), `task` (asks for something to be written, fixed, converted or explained step by step),
`personal` (a recommendation that depends on who the user is) or `sensitive` with one of
PENGUIN's seven domains. Users add theirs with `extra_examples` or `extra_examples_file`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from redraft.config import RefinerConfig, RoutingExample
from redraft.errors import RedraftError

PACKAGED = "routing_examples.jsonl"


class ExamplesError(RedraftError, ValueError):
    """An examples file that cannot be read; the message names the file and the line."""


def read_examples(text: str, source: str) -> list[RoutingExample]:
    """Parse JSONL examples; any bad line raises ExamplesError naming `source` and the line."""
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(RoutingExample.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ExamplesError(f"{source} line {number}: invalid JSON: {exc.msg}") from exc
        except ValidationError as exc:
            from redraft.errors import describe_validation_error

            problems = describe_validation_error(exc)
            raise ExamplesError(f"{source} line {number}: {problems}") from exc
    return examples


def packaged_examples() -> list[RoutingExample]:
    text = resources.files("redraft").joinpath("data", PACKAGED).read_text(encoding="utf-8")
    return read_examples(text, PACKAGED)


def load_examples(config: RefinerConfig) -> list[RoutingExample]:
    """The packaged examples, then `extra_examples`, then those of `extra_examples_file`."""
    examples = packaged_examples() + list(config.extra_examples)
    path: Path | None = config.extra_examples_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ExamplesError(f"cannot read {path}: {exc.strerror or exc}") from exc
        examples += read_examples(text, str(path))
    return examples
