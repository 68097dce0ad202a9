"""The events of one turn as `Refiner.astream` yields them, read from LangGraph's stream."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from redraft.safety.ask import INTERRUPT_TYPE
from redraft.state import Critique, Plan, RefineResult, SafetyQuestion


class PlanMade(BaseModel):
    type: Literal["plan"] = "plan"
    plan: Plan


class DraftWritten(BaseModel):
    type: Literal["draft"] = "draft"
    draft: str


class CritiqueDone(BaseModel):
    type: Literal["critique"] = "critique"
    critique: Critique


class ReplyToken(BaseModel):
    """Text of the final reply as it is written. `reset`: discard the text received so far
    (a streamed rewrite was abandoned); the reply then arrives again."""

    type: Literal["token"] = "token"
    text: str = ""
    reset: bool = False


class TurnDone(BaseModel):
    type: Literal["done"] = "done"
    result: RefineResult


INTERRUPT = "__interrupt__"
"""The key under which LangGraph streams a turn's interrupts (private in LangGraph)."""

RefineEvent = PlanMade | DraftWritten | CritiqueDone | ReplyToken | TurnDone

STREAM_MODES = ["updates", "custom", "values"]
"""What the graph streams for `Refiner.astream`: node updates (plan, draft, critiques,
interrupts), the reply's text as the editor writes it, and the state (the last one is what the
turn ends with)."""

RESULT_MODES = ["values"]
"""What it streams for `Refiner.arefine`, whose caller wants the result alone: the state after
each step (a turn stopped at its deadline ends with the last one), which also carries the safety
agent's question when the turn stops for it. No events are made only to be dropped: about 0.8 ms
of CPU less per five-call turn (BENCHMARKS.md, "CPU per turn")."""


class TurnEvents:
    """Reads one turn's stream chunks as events, and keeps what the turn ends with: the last
    state, the safety agent's question, and whether reply text is being streamed."""

    def __init__(self) -> None:
        self.final: dict[str, Any] = {}
        self.question: SafetyQuestion | None = None
        self.streaming = False

    def read(self, mode: str, chunk: Any) -> list[RefineEvent]:
        """The events of one `(mode, chunk)` pair of the graph's stream."""
        if mode == "values":
            if INTERRUPT in chunk:  # the turn stops for a question: the state, and it
                self.question = _question_from(chunk[INTERRUPT])
                chunk = {key: value for key, value in chunk.items() if key != INTERRUPT}
            self.final = chunk
        elif mode == "custom" and isinstance(chunk, dict):
            if "token" in chunk:
                self.streaming = True
                return [ReplyToken(text=chunk["token"])]
            if chunk.get("reset"):
                self.streaming = False
                return [ReplyToken(reset=True)]
        elif mode == "updates":
            if INTERRUPT in chunk:
                self.question = _question_from(chunk[INTERRUPT])
            return _events_from_update(chunk)
        return []

    def replace_reply(self, reply: str) -> list[ReplyToken]:
        """Tokens that make `reply` the whole reply, whatever was streamed before."""
        return [*([ReplyToken(reset=True)] if self.streaming else []), ReplyToken(text=reply)]


class ReplyText:
    """The reply for clients that can only append text (OpenAI chunks, LangChain chunks).

    Feed it each `ReplyToken`, then the final reply: text is passed on as it is written; after a
    reset nothing more is passed on until the end, and then whatever completes the reply.
    """

    def __init__(self) -> None:
        self.sent = ""
        self._held = False

    def add(self, token: ReplyToken) -> str:
        """The text to send now."""
        self._held = self._held or token.reset
        if self._held:
            return ""
        self.sent += token.text
        return token.text

    def finish(self, reply: str) -> str:
        """The text that completes `reply`: empty when `reply` does not extend what was sent
        (sent text cannot be taken back; `sent != reply` tells)."""
        rest = reply[len(self.sent) :] if reply.startswith(self.sent) else ""
        self.sent += rest
        return rest


def _events_from_update(update: dict[str, Any]) -> list[RefineEvent]:
    events: list[RefineEvent] = []
    for node, values in update.items():
        if not isinstance(values, dict):
            continue
        if node == "draft" and values.get("draft"):
            events.append(DraftWritten(draft=values["draft"]))
        if node == "plan" and values.get("plan"):
            events.append(PlanMade(plan=Plan.model_validate(values["plan"])))
        critiques = values.get("critiques")
        if isinstance(critiques, list):
            events.extend(CritiqueDone(critique=Critique.model_validate(c)) for c in critiques)
    return events


def _question_from(interrupts: Any) -> SafetyQuestion | None:
    for item in interrupts or ():
        value = getattr(item, "value", None)
        if isinstance(value, dict) and value.get("type") == INTERRUPT_TYPE:
            return SafetyQuestion(attribute=value["attribute"], question=value["question"])
    return None
