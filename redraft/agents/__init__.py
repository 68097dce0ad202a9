"""The agents. A critic is one module with ASPECT, SYSTEM and render(task); register it here."""

from __future__ import annotations

from types import ModuleType

from redraft.agents import coherence, factuality, personalization
from redraft.safety import critic as safety

CRITICS: dict[str, ModuleType] = {
    module.ASPECT: module for module in (factuality, personalization, coherence, safety)
}
