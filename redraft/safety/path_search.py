"""RAISE's offline stage: Monte-Carlo tree search over the order in which to ask attributes.

State: the attributes acquired so far (in order). Action: ask one more. Reward: the judge's score
of a reply written with the acquired attributes' true values (from the user's hidden profile).
The best path per query goes into a path library that the safety agent retrieves by similarity.
Rewards depend only on the set of attributes, so each set is judged once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# An attribute's name: the search keeps the caller's type (PENGUIN's literal names, say).
A = TypeVar("A", bound=str)

Reward = Callable[[frozenset[A]], Awaitable[float]]


@dataclass
class _Node(Generic[A]):
    path: tuple[A, ...]
    visits: int = 0
    value: float = 0.0
    children: dict[A, _Node[A]] = field(default_factory=dict)

    def mean(self) -> float:
        return self.value / self.visits if self.visits else 0.0


@dataclass
class SearchResult(Generic[A]):
    best_path: list[A]
    rewards: dict[frozenset[A], float]
    simulations: int


async def search_path(
    attributes: Sequence[A],
    reward: Reward[A],
    *,
    depth: int = 4,
    simulations: int = 40,
    exploration: float = 1.4,
    seed: int = 0,
) -> SearchResult[A]:
    """Find a good order of at most `depth` attributes to ask, within `simulations` rewards."""
    rng = random.Random(seed)
    cache: dict[frozenset[A], float] = {}

    async def judged(path: tuple[A, ...]) -> float:
        key = frozenset(path)
        if key not in cache:
            cache[key] = await reward(key)
        return cache[key]

    root: _Node[A] = _Node(path=())
    for _ in range(simulations):
        node, trail = root, [root]
        # selection: descend through fully expanded nodes by UCT
        while len(node.path) < depth:
            untried = [a for a in attributes if a not in node.path and a not in node.children]
            if untried:
                attribute = rng.choice(untried)
                child = _Node(path=(*node.path, attribute))
                node.children[attribute] = child
                node, trail = child, [*trail, child]
                break
            if not node.children:
                break
            parent = node
            node = max(
                parent.children.values(),
                key=lambda c: (
                    c.mean()
                    + exploration * math.sqrt(math.log(parent.visits + 1) / (c.visits + 1e-9))
                ),
            )
            trail.append(node)
        score = await judged(node.path)
        for visited in trail:
            visited.visits += 1
            visited.value += score

    best: list[A] = []
    node = root
    while node.children and len(best) < depth:
        node = max(node.children.values(), key=lambda c: (c.mean(), c.visits))
        best.append(node.path[-1])
    return SearchResult(best_path=best, rewards=cache, simulations=simulations)
