"""The critics redraft knows: the four built-ins and those registered from user code.

This registry is the single source of truth: the config's `critics` are checked against it, the
LLM planner's hints and choices, the merge's precedence, the router's extra aspects and the
graph's critic nodes all come from it. Register a critic for the whole process with
`register_critic` (or the config's `critic_modules`), or hand it to one refiner
(`Refiner(critics=...)`); see docs/critics.md.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

from redraft.agents import coherence, factuality, personalization
from redraft.agents.critic import Critic, CriticError, RouterScoring
from redraft.safety import critic as safety

BUILTIN: tuple[Critic, ...] = (
    factuality.CRITIC,
    personalization.CRITIC,
    coherence.CRITIC,
    safety.CRITIC,
)

_lock = threading.Lock()
_critics: dict[str, Critic] = {critic.aspect: critic for critic in BUILTIN}

CRITICS: Mapping[str, Critic] = MappingProxyType(_critics)
"""Every registered critic by aspect, live and read-only: the built-ins, then user critics in
the order they were registered."""


def register_critic(critic: Critic, *, replace: bool = False) -> Critic:
    """Make `critic` known to every refiner of this process (name it in the config's `critics`,
    whose default is every registered critic). Registering the same object again does nothing;
    another critic under a registered aspect (a built-in too) needs `replace=True`."""
    if not isinstance(critic, Critic):
        raise CriticError(f"register_critic takes a Critic, not {type(critic).__name__}")
    with _lock:
        known = _critics.get(critic.aspect)
        if known is not None and known is not critic and not replace:
            raise CriticError(
                f"a critic {critic.aspect!r} is already registered: give this one another "
                "aspect, or register it with replace=True"
            )
        _critics[critic.aspect] = critic
    return critic


def unregister_critic(aspect: str) -> None:
    """Forget a critic registered with `register_critic` (a replaced built-in comes back), e.g.
    between tests. The built-ins themselves stay: leave them out of `critics` instead."""
    builtin = {critic.aspect: critic for critic in BUILTIN}
    with _lock:
        if aspect not in _critics:
            raise CriticError(f"no critic {aspect!r} is registered")
        if _critics[aspect] is builtin.get(aspect):
            raise CriticError(f"{aspect!r} is a built-in critic: leave it out of `critics`")
        if aspect in builtin:
            _critics[aspect] = builtin[aspect]
        else:
            del _critics[aspect]


class CriticSet(Mapping[str, Critic]):
    """The critics one graph can run: the registered ones and those given to its refiner.

    Iterates in registration order (the graph's nodes); `precedence` is the merge's order,
    highest first; `always` are the refiner's own critics, among the planner's choices on every
    turn whatever the config's `critics` say.
    """

    def __init__(self, critics: Mapping[str, Critic], always: Sequence[str] = ()) -> None:
        self._critics = dict(critics)
        self.always = tuple(always)
        order = list(self._critics)
        self.precedence: tuple[str, ...] = tuple(
            sorted(order, key=lambda a: (self._critics[a].precedence, order.index(a)))
        )

    def __getitem__(self, aspect: str) -> Critic:
        return self._critics[aspect]

    def __iter__(self) -> Iterator[str]:
        return iter(self._critics)

    def __len__(self) -> int:
        return len(self._critics)

    def active(self, chosen: Sequence[str]) -> list[str]:
        """The critics a turn's planner may choose: those of `chosen` (the config's `critics`)
        this set has, then the refiner's own."""
        names = [a for a in chosen if a in self._critics]
        return names + [a for a in self.always if a not in names]


def critic_set(extra: Sequence[Critic] = ()) -> CriticSet:
    """The registered critics plus `extra` (one refiner's own): an aspect of `extra` that is
    registered already, or given twice, is an error unless it is the very same critic."""
    with _lock:
        critics = dict(_critics)
    own: list[str] = []
    for critic in extra:
        if not isinstance(critic, Critic):
            raise CriticError(f"critics: expected Critic objects, got {type(critic).__name__}")
        known = critics.get(critic.aspect)
        if known is not None and known is not critic:
            where = "given twice" if critic.aspect in own else "already registered"
            raise CriticError(
                f"critics: a critic {critic.aspect!r} is {where}; give this one another aspect"
            )
        critics[critic.aspect] = critic
        own.append(critic.aspect)
    return CriticSet(critics, always=list(dict.fromkeys(own)))


MODULE_ENTRY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?")


def load_critic_modules(entries: Sequence[str]) -> list[Critic]:
    """Import each `package.module:NAME` (a Critic, or a list of them) or `package.module` (its
    `CRITICS` list) and register what it holds; raises CriticError naming the entry."""
    loaded: list[Critic] = []
    for entry in entries:
        if not MODULE_ENTRY.fullmatch(entry):
            raise CriticError(f"{entry!r}: use package.module or package.module:NAME")
        module_name, _, attribute = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise CriticError(
                f"{entry!r}: cannot import {module_name} ({type(exc).__name__}: {exc})"
            ) from exc
        name = attribute or "CRITICS"
        if not hasattr(module, name):
            raise CriticError(f"{entry!r}: {module_name} has no {name}")
        value = getattr(module, name)
        critics = [value] if isinstance(value, Critic) else value
        if not isinstance(critics, list | tuple) or not all(isinstance(c, Critic) for c in critics):
            raise CriticError(
                f"{entry!r}: {name} is a {type(value).__name__}, not a Critic or a list of them"
            )
        for critic in critics:
            try:
                register_critic(critic)
            except CriticError as exc:
                raise CriticError(f"{entry!r}: {exc}") from exc
        loaded.extend(critics)
    return loaded


__all__ = [
    "BUILTIN",
    "CRITICS",
    "Critic",
    "CriticError",
    "CriticSet",
    "RouterScoring",
    "critic_set",
    "load_critic_modules",
    "register_critic",
    "unregister_critic",
]
