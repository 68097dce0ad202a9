"""What redraft knows about a user: an explicit profile, facts with provenance, edit preferences."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from redraft.state import PENGUIN_ATTRIBUTES, PenguinAttribute

FactSource = Literal["stated", "inferred", "edit", "imported"]
"""stated by the user, inferred from a turn, learned from an edit, imported from a file."""
FactStatus = Literal["active", "superseded"]
STYLE_FIELDS: tuple[str, ...] = ("tone", "length", "formality", "language")
MAX_TEXT_CHARS = 2000

__all__ = [
    "PENGUIN_ATTRIBUTES",
    "STYLE_FIELDS",
    "Attribute",
    "EditPreference",
    "Fact",
    "FactSource",
    "FactStatus",
    "PenguinAttribute",
    "Profile",
    "Style",
    "new_id",
    "normalise",
    "now",
]


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def normalise(text: str) -> str:
    """A fact's text for comparison: case, spacing and a final period do not matter."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").casefold()


class Style(BaseModel):
    """How the user wants to be answered; every field optional, free text."""

    model_config = ConfigDict(extra="forbid")

    tone: str | None = Field(None, max_length=200, description="e.g. warm, neutral, playful")
    length: str | None = Field(None, max_length=200, description="e.g. short, detailed")
    formality: str | None = Field(None, max_length=200, description="e.g. casual, formal")
    language: str | None = Field(None, max_length=200, description="e.g. English, de, fr-CA")

    def describe(self) -> str | None:
        """One line for a prompt, or None when nothing is known."""
        parts = [f"{name}: {getattr(self, name)}" for name in STYLE_FIELDS if getattr(self, name)]
        return "; ".join(parts) or None


class Attribute(BaseModel):
    """One PENGUIN attribute's value, where it came from and when."""

    value: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: FactSource = "stated"
    updated_at: datetime = Field(default_factory=now)


class Profile(BaseModel):
    """The explicit part of a persona: name, style and the ten PENGUIN attributes (each optional).

    The attributes are what the safety agent reads and asks about; they are not sent to the
    personalization critic.
    """

    name: str | None = Field(None, max_length=200)
    style: Style = Field(default_factory=Style)
    attributes: dict[PenguinAttribute, Attribute] = Field(default_factory=dict)
    updated_at: datetime | None = None


class Fact(BaseModel):
    """One thing known about the user, with provenance. Superseded facts are kept, marked."""

    id: str = Field(default_factory=new_id)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: FactSource
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    status: FactStatus = "active"
    superseded_at: datetime | None = None
    superseded_by: str | None = Field(None, description="Id of the fact that replaced this one.")
    supersedes: str | None = Field(None, description="Id of the fact this one replaced.")


class EditPreference(BaseModel):
    """CIPHER: the preference a user's edit of a reply expressed, kept with its context."""

    id: str = Field(default_factory=new_id)
    preference: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    context: str = Field(min_length=1, description="What the reply answered (embedded).")
    reply: str = ""
    edited_reply: str = ""
    created_at: datetime = Field(default_factory=now)
