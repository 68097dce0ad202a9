"""`instance_for_schema` must yield values that the originating pydantic model accepts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

import openai
import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from redraft.testing.schemas import instance_for_schema


class Severity(StrEnum):
    LOW = "low"
    HIGH = "high"


class Span(BaseModel):
    start: int = Field(ge=3)
    end: int = Field(gt=0, le=10, multiple_of=4)


class Issue(BaseModel):
    kind: Literal["fact", "style"]
    severity: Severity
    span: Span
    note: str | None
    tags: list[str] = Field(min_length=2)
    fix: str = Field(min_length=12, max_length=20)


class Review(BaseModel):
    verdict: Literal["pass", "revise"]
    issues: list[Issue] = Field(min_length=1)
    score: float = Field(gt=0, lt=1)
    reviewer: Span | None = None
    created: datetime
    id: UUID
    counts: dict[str, int]
    pair: tuple[int, str]
    strict: bool
    schema_version: Literal[2] = 2


class Node(BaseModel):
    """Recursive models must terminate: nullable links resolve to None."""

    label: str
    parent: Node | None
    children: list[Node]


@pytest.mark.parametrize(
    "schema_of",
    [
        pytest.param(lambda model: model.model_json_schema(), id="pydantic"),
        pytest.param(
            lambda model: openai.pydantic_function_tool(model)["function"]["parameters"],
            id="openai-strict",
        ),
        pytest.param(
            lambda model: convert_to_openai_tool(model, strict=True)["function"]["parameters"],
            id="langchain-strict",
        ),
    ],
)
@pytest.mark.parametrize("model", [Review, Node])
def test_instances_validate_against_their_model(model: type[BaseModel], schema_of) -> None:
    instance = instance_for_schema(schema_of(model))

    model.model_validate(instance)


def test_review_instance_is_minimal_and_respects_constraints() -> None:
    review = Review.model_validate(instance_for_schema(Review.model_json_schema()))

    assert review.verdict == "pass"
    assert review.reviewer is None
    assert review.schema_version == 2
    [issue] = review.issues
    assert (issue.kind, issue.severity, issue.note) == ("fact", Severity.LOW, None)
    assert len(issue.tags) == 2
    assert 12 <= len(issue.fix) <= 20
    assert (issue.span.start, issue.span.end) == (3, 4)
    assert 0 < review.score < 1


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "default": "given"}, "given"),
        ({"const": "fixed"}, "fixed"),
        ({"enum": ["first", "second"]}, "first"),
        ({"type": ["integer", "null"]}, None),
        ({"anyOf": [{"type": "boolean"}, {"type": "string"}]}, False),
        ({"type": "string", "maxLength": 3}, "exa"),
        ({"type": "string", "format": "date"}, "2024-01-01"),
        ({"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 11}, 10),
        ({"type": "number", "minimum": -5, "maximum": -1}, -5.0),
        ({"type": "array", "items": {"type": "integer"}}, []),
        ({}, None),
        (
            {
                "definitions": {
                    "a/b": {"type": "object", "properties": {"x": {"type": "integer"}}}
                },
                "$ref": "#/definitions/a~1b",
            },
            {"x": 0},
        ),
        (
            {
                "allOf": [
                    {"properties": {"a": {"type": "integer"}}},
                    {"properties": {"b": {"type": "boolean"}}},
                ]
            },
            {"a": 0, "b": False},
        ),
    ],
)
def test_schema_keywords(schema: dict, expected: object) -> None:
    assert instance_for_schema(schema) == expected


def test_unsatisfiable_number_is_reported() -> None:
    with pytest.raises(ValueError, match="cannot find a number"):
        instance_for_schema({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2})


def test_defaults_are_copied_not_shared() -> None:
    schema = {"type": "array", "default": []}

    instance_for_schema(schema).append(1)

    assert schema["default"] == []
