"""`redraft persona import|export|show|forget`: see and manage what redraft keeps about a user."""

from __future__ import annotations

import argparse
import asyncio

from pydantic import ValidationError

from redraft.config import RefinerConfig
from redraft.parsing import printable
from redraft.personas.files import (
    PersonaFile,
    PersonaFileError,
    export_persona,
    import_persona,
    persona_yaml,
    read_persona_file,
)
from redraft.personas.recall import ANONYMOUS_USER
from redraft.request_limits import check_identifier


def run_persona_command(args: argparse.Namespace) -> int:
    from redraft.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail
    from redraft.errors import describe_validation_error

    user_id = args.user
    if not user_id.strip() or len(user_id) > 256:
        return fail("the user id must have 1 to 256 characters", EXIT_BAD_INPUT)
    try:
        check_identifier(user_id)
    except ValueError as exc:
        return fail(f"the user id {exc}", EXIT_BAD_INPUT)
    try:
        config = RefinerConfig()
    except ValidationError as exc:
        return fail(f"invalid configuration: {describe_validation_error(exc)}", EXIT_BAD_INPUT)
    persona = None
    if args.persona_command == "import":
        if user_id == ANONYMOUS_USER:
            return fail(
                f"user {ANONYMOUS_USER!r} is every request without a user_id and has no memory; "
                "import for a named user",
                EXIT_BAD_INPUT,
            )
        try:
            persona = read_persona_file(args.file, config.max_persona_file_bytes)
        except PersonaFileError as exc:
            return fail(str(exc), EXIT_BAD_INPUT)
        except RecursionError:  # the YAML parser recurses once per level of nesting
            return fail(f"{printable(args.file)}: invalid YAML: nested too deeply", EXIT_BAD_INPUT)
    try:
        print(asyncio.run(_run(config, args.persona_command, user_id, persona)), end="")
    except Exception as exc:
        return fail(
            f"persona {args.persona_command} failed: {type(exc).__name__}: {exc}", EXIT_FAILED
        )
    return 0


async def _run(
    config: RefinerConfig, action: str, user_id: str, persona: PersonaFile | None
) -> str:
    from redraft.refiner import Refiner

    async with Refiner(config) as refiner:
        personas = await refiner.personas()
        if action == "import":
            assert persona is not None
            counts = await import_persona(personas, user_id, persona)
            return (
                f"imported for user {user_id!r}: {counts['facts']} facts "
                f"({counts['skipped']} already known), {counts['attributes']} attributes, "
                f"{counts['preferences']} edit preferences\n"
            )
        if action == "forget":
            counts = await refiner.forget(user_id)
            listed = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing stored"
            return f"forgot user {user_id!r}: {listed}\n"
        exported = await export_persona(personas, user_id)
        if action == "export":
            return persona_yaml(exported)
        return describe(user_id, exported, threads=len(await personas.threads(user_id)))


def describe(user_id: str, persona: PersonaFile, *, threads: int) -> str:
    """A readable summary of what is stored about a user."""
    lines = [f"Persona of {user_id!r}"]
    lines.append(f"  name: {persona.name or '-'}")
    lines.append(f"  style: {persona.style.describe() or '-'}")
    lines.append(f"  attributes ({len(persona.attributes)}):")
    lines += [
        f"    {name}: {a.value}  [{a.source}{_when(a.updated_at)}]"
        for name, a in persona.attributes.items()
    ]
    active = [f for f in persona.facts if f.status == "active"]
    old = [f for f in persona.facts if f.status != "active"]
    lines.append(f"  facts ({len(active)} active, {len(old)} superseded):")
    lines += [
        f"    {f.text}  [{f.source}, confidence {f.confidence:.2f}{_when(f.created_at)}]"
        for f in active
    ]
    lines += [f"    (superseded{_when(f.superseded_at)}) {f.text}" for f in old]
    lines.append(f"  preferences learned from edits ({len(persona.preferences)}):")
    lines += [f"    {p.preference}  [context: {p.context[:60]!r}]" for p in persona.preferences]
    lines.append(f"  threads: {threads}")
    return "\n".join(lines) + "\n"


def _when(moment: object) -> str:
    return f", {moment:%Y-%m-%d %H:%M}" if moment else ""
