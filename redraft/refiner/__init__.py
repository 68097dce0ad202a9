"""The Refiner: redraft's async and sync API over the refine graph."""

from redraft.refiner.core import (
    CritiqueDone,
    DraftWritten,
    PlanMade,
    RefineEvent,
    Refiner,
    ReplyText,
    ReplyToken,
    TurnDone,
    thread_key,
)

__all__ = [
    "CritiqueDone",
    "DraftWritten",
    "PlanMade",
    "RefineEvent",
    "Refiner",
    "ReplyText",
    "ReplyToken",
    "TurnDone",
    "thread_key",
]
