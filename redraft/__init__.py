"""redraft: refine chatbot replies before the user sees them.

Start with `Refiner` (async and sync API), configured by `RefinerConfig` (or the environment).
A critic of your own is a `Critic`, registered with `register_critic` or given to one `Refiner`
(docs/critics.md). The graph itself is `redraft.graphs.refine.build_graph`; the agents live in
`redraft.agents`.
"""

from redraft.agents import register_critic
from redraft.agents.critic import Critic, RouterScoring
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
from redraft.state import CriticTask, Critique, Plan, RefineRequest, RefineResult
from redraft.wrapper import RefinedChatModel

__all__ = [
    "Critic",
    "CriticTask",
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
    "RouterScoring",
    "TurnDone",
    "register_critic",
]
