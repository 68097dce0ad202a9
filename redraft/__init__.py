"""redraft: refine chatbot replies before the user sees them.

Start with `Refiner` (async and sync API), configured by `RefinerConfig` (or the environment).
The graph itself is `redraft.graphs.refine.build_graph`; the agents live in `redraft.agents`.
"""

from redraft.config import RefinerConfig
from redraft.errors import RefineError
from redraft.refiner import (
    CritiqueDone,
    DraftWritten,
    PlanMade,
    RefineEvent,
    Refiner,
    ReplyToken,
    TurnDone,
)
from redraft.state import Critique, Plan, RefineRequest, RefineResult
from redraft.wrapper import RefinedChatModel

__all__ = [
    "Critique",
    "CritiqueDone",
    "DraftWritten",
    "Plan",
    "PlanMade",
    "RefineError",
    "RefineEvent",
    "RefineRequest",
    "RefineResult",
    "RefinedChatModel",
    "Refiner",
    "RefinerConfig",
    "ReplyToken",
    "TurnDone",
]
