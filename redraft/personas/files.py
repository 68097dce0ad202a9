"""Persona files (YAML): import all or nothing, export everything stored about a user.

The format (see `personas/*.yaml`): `name`, `style` (tone, length, formality, language),
`attributes` (PENGUIN attribute → value), `facts` (a sentence, or a mapping with text, source,
confidence, times and status) and `preferences` (learned from edits: preference and context).
An export is a valid import.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from redraft.errors import RedraftError
from redraft.parsing import excerpt, printable
from redraft.personas.model import (
    MAX_TEXT_CHARS,
    Attribute,
    EditPreference,
    Fact,
    FactSource,
    FactStatus,
    PenguinAttribute,
    Style,
    new_id,
    normalise,
    now,
)
from redraft.personas.store import NAME_KEY, PersonaStore, style_item


class PersonaFileError(RedraftError, ValueError):
    """A persona file that cannot be imported; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileAttribute(_Strict):
    value: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: FactSource = "imported"
    updated_at: datetime | None = None


class FileFact(_Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: FactSource = "imported"
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    created_at: datetime | None = None
    status: FactStatus = "active"
    superseded_at: datetime | None = None
    id: str | None = Field(None, min_length=1, max_length=64)
    superseded_by: str | None = None
    supersedes: str | None = None


class FilePreference(_Strict):
    preference: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    context: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    created_at: datetime | None = None


class PersonaFile(_Strict):
    """One persona, as written in a file."""

    name: str | None = Field(None, min_length=1, max_length=200)
    style: Style = Field(default_factory=Style)
    attributes: dict[PenguinAttribute, FileAttribute] = Field(default_factory=dict)
    facts: list[FileFact] = Field(default_factory=list)
    preferences: list[FilePreference] = Field(default_factory=list)

    @field_validator("attributes", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"value": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("facts", mode="before")
    @classmethod
    def _plain_sentences(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value


MAX_FILE_BYTES = 1_000_000
"""Largest persona file read (`REDRAFT_MAX_PERSONA_FILE_BYTES`): far above any real persona,
checked before a byte is parsed."""


def read_persona_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> PersonaFile:
    """Parse and validate a persona file; raises PersonaFileError naming the file and field.

    Refused before parsing: anything but a regular file (a FIFO would block, `/dev/zero`
    never ends), and a file over `max_bytes`. YAML aliases are refused too: a few hundred
    bytes of nested aliases expand to billions of items. Errors quote at most a short,
    escaped excerpt of the file, so a link to a system file does not echo its lines.
    """
    from redraft.errors import describe_validation_error

    path = Path(path)
    shown = printable(str(path))
    try:
        text = _read_bounded(path, max_bytes)
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise PersonaFileError(f"{shown}: YAML aliases (*name) are not accepted")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise PersonaFileError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PersonaFileError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise PersonaFileError(
            f"{shown}: invalid YAML{where}: {excerpt(str(problem), 80)}"
        ) from None
    if not isinstance(data, dict):
        raise PersonaFileError(f"{shown}: a persona file must be a mapping (name, style, facts…)")
    try:
        return PersonaFile.model_validate(data)
    except ValidationError as exc:
        raise PersonaFileError(f"{shown}: {describe_validation_error(exc)}") from None


def _read_bounded(path: Path, max_bytes: int) -> str:
    # Checked before opening (opening a FIFO blocks) and on the open file (it may have changed).
    if not stat.S_ISREG(path.stat().st_mode):
        raise PersonaFileError(f"{printable(str(path))}: not a regular file")
    with path.open("rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise PersonaFileError(f"{printable(str(path))}: not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PersonaFileError(
            f"{printable(str(path))}: larger than {max_bytes} bytes "
            "(REDRAFT_MAX_PERSONA_FILE_BYTES)"
        )
    return data.decode("utf-8")


async def import_persona(personas: PersonaStore, user_id: str, persona: PersonaFile) -> dict:
    """Add a (validated) persona to the user's, in one atomic write. Facts already stored (same
    id, or the same text as an active fact) are skipped; style fields given replace the old."""
    stored = await personas.facts(user_id)
    known_ids = {f.id for f in stored}
    known_texts = {normalise(f.text) for f in stored if f.status == "active"}
    facts = []
    for entry in persona.facts:
        if entry.id in known_ids or (
            entry.status == "active" and normalise(entry.text) in known_texts
        ):
            continue
        created = entry.created_at or now()
        facts.append(
            Fact(
                **entry.model_dump(exclude={"id", "created_at"}, exclude_none=True),
                id=entry.id or new_id(),
                created_at=created,
                updated_at=created,
            )
        )
        known_texts.add(normalise(entry.text))
    edits = [
        EditPreference(preference=p.preference, context=p.context, created_at=p.created_at or now())
        for p in persona.preferences
    ]
    profile: dict[str, dict[str, Any]] = {
        name: Attribute(**a.model_dump(exclude_none=True)).model_dump(mode="json")
        for name, a in persona.attributes.items()
    }
    if persona.name:
        profile[NAME_KEY] = {"value": persona.name}
    style_given = persona.style.model_dump(exclude_none=True)
    if style_given:
        current = (await personas.get_profile(user_id)).style
        profile |= style_item(current.model_copy(update=style_given))
    await personas.write(user_id, facts=facts, edits=edits, profile=profile)
    return {
        "facts": len(facts),
        "skipped": len(persona.facts) - len(facts),
        "attributes": len(persona.attributes),
        "preferences": len(edits),
    }


async def export_persona(personas: PersonaStore, user_id: str) -> PersonaFile:
    """Everything stored about the user's persona (facts with provenance, superseded too)."""
    profile = await personas.get_profile(user_id)
    facts = await personas.facts(user_id)
    edits = await personas.edits(user_id)
    return PersonaFile(
        name=profile.name,
        style=profile.style,
        attributes={
            name: FileAttribute(**a.model_dump()) for name, a in profile.attributes.items()
        },
        facts=[FileFact(**f.model_dump(exclude={"updated_at"})) for f in facts],
        preferences=[
            FilePreference(preference=e.preference, context=e.context, created_at=e.created_at)
            for e in edits
        ],
    )


def persona_yaml(persona: PersonaFile) -> str:
    data = persona.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    if not data["style"]:
        del data["style"]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
