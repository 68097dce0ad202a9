"""A refiner's persona-memory work, kept off the turns' path: what a turn learns is learned after
its reply is out, each user's work in order, and a user forgotten meanwhile is not learned from
by the turns that were still running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redraft.config import RefinerConfig
from redraft.llm.calls import Models
from redraft.personas.learning import learn_from_turn
from redraft.personas.store import PersonaStore
from redraft.personas.worker import MemoryWorker
from redraft.state import RefineResult

T = TypeVar("T")


class BackgroundMemory:
    """Memory jobs per user, in order (`MemoryWorker`), with a count of the user's `forget`s
    that a turn reads when it starts (`generation`) and its learning checks when it runs."""

    def __init__(self, models: Models) -> None:
        self._models = models
        self._worker = MemoryWorker()
        self._forgotten: dict[str, int] = {}

    def generation(self, user_id: str) -> int:
        return self._forgotten.get(user_id, 0)

    def forgetting(self, user_id: str) -> None:
        """The user is being forgotten: turns in flight learn nothing of them."""
        self._forgotten[user_id] = self.generation(user_id) + 1

    def remember_thread(self, personas: PersonaStore, user_id: str, thread_id: str) -> None:
        """Index the thread under its user (in the background), so `forget` can delete it."""
        self._worker.submit(
            user_id, lambda: personas.remember_thread(user_id, thread_id), "remember_thread"
        )

    def learn_later(
        self,
        personas: PersonaStore,
        user_id: str,
        final: dict[str, Any],
        result: RefineResult,
        settings: RefinerConfig,
        generation: int,
    ) -> None:
        """Learn from the turn after its reply is out: one extraction call, in the background,
        after the user's earlier memory work."""
        history = list(final.get("history") or [])
        reply = {"role": "assistant", "content": result.reply}
        if not result.tool_calls and (not history or history[-1] != reply):
            history.append(reply)

        async def learn() -> None:
            if self.generation(user_id) != generation:
                return  # the user was forgotten while this turn ran
            await learn_from_turn(
                personas,
                self._models.for_role("memory", settings),
                user_id=user_id,
                history=history,
                method=settings.structured_output,
            )

        self._worker.submit(user_id, learn, "learn_from_turn")

    async def run(self, user_id: str, job: Callable[[], Awaitable[T]], name: str) -> T:
        """`job`'s result, run after the user's pending memory work."""
        return await self._worker.run(user_id, job, name)

    async def drain(self) -> None:
        """Wait until the work scheduled so far (and meanwhile) is done."""
        await self._worker.drain()
