"""The Refiner: redraft's async and sync API over the refine graph.

`core` holds the `Refiner`; a turn's run is in `turn`, its events in `events`, its result in
`results`; thread storage in `stores`, persona-memory work in `memory`, loading ahead in
`preload`, and the sync API's event loop in `loop`.
"""

from redraft.refiner.core import Refiner
from redraft.refiner.events import (
    CritiqueDone,
    DraftWritten,
    PlanMade,
    RefineEvent,
    ReplyText,
    ReplyToken,
    TurnDone,
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
]
