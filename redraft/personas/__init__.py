"""Personas and memory: who the user is, what redraft learned about them, and how to forget it.

`PersonaStore` keeps profiles, facts, edit preferences and thread ids on any LangGraph store, one
namespace per user. `Refiner` opens the configured store, hands the relevant facts to each turn's
critics and learns from turns and edits in the background (`redraft.personas.learning`).
"""

from redraft.personas.files import PersonaFile, PersonaFileError, read_persona_file
from redraft.personas.model import (
    PENGUIN_ATTRIBUTES,
    Attribute,
    EditPreference,
    Fact,
    FactSource,
    PenguinAttribute,
    Profile,
    Style,
)
from redraft.personas.store import PersonaStore

__all__ = [
    "PENGUIN_ATTRIBUTES",
    "Attribute",
    "EditPreference",
    "Fact",
    "FactSource",
    "PenguinAttribute",
    "PersonaFile",
    "PersonaFileError",
    "PersonaStore",
    "Profile",
    "Style",
    "read_persona_file",
]
