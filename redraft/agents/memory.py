"""Memory agent: what to remember about the user from the latest exchange.

It sees the exchange and the stored facts most similar to it (ids m1, m2, ...), and decides for
each lasting fact whether it is new (add), refines a stored fact (update), contradicts one
(supersede) or is already known (ignore); plus any stated preference about how to be answered.
Runs after the reply was sent, never on the reply's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from redraft.agents.prompting import agent_system, block, blocks, conversation, user_message
from redraft.llm.calls import call_structured
from redraft.personas.model import MAX_TEXT_CHARS, Fact, Style

AGENT = "memory"
STORED_PREFIX = "m"

SYSTEM = """\
You keep the memory a chatbot has of its user. From the latest exchange, find lasting facts
about the user (who they are, their situation, what they like or need, how they want to be
answered) and decide how each relates to the stored facts you are shown:
- add: new information;
- update: a stored fact made more precise or complete (`target`: its id; `text`: the full new
  wording);
- supersede: contradicts a stored fact that no longer holds, e.g. a move or a change of mind
  (`target`: its id; `text`: what holds now);
- ignore: already stored, or not worth remembering.
Only what the user says about themselves counts; never take facts from the assistant's turns.
Write each fact as one short, self-contained sentence about "the user". `source` is "stated"
when the user said it outright, "inferred" when you conclude it; `confidence` is how sure you are.
Set `style` fields (tone, length, formality, language) only when the user says how they want to be
answered; leave the others null. Small talk and one-off requests give no facts at all.
"""


class FactDecision(BaseModel):
    action: Literal["add", "update", "supersede", "ignore"]
    text: str = Field(max_length=MAX_TEXT_CHARS, description="The fact: one sentence.")
    target: str | None = Field(
        None, description="For update and supersede: the id of the stored fact (e.g. m2)."
    )
    source: Literal["stated", "inferred"] = "stated"
    confidence: float = Field(0.8, ge=0.0, le=1.0)


class MemoryOutput(BaseModel):
    """What the memory agent proposes for one exchange."""

    facts: list[FactDecision] = Field(default_factory=list)
    style: Style | None = Field(None, description="Answer preferences the user stated, if any.")


async def extract_memory(
    model: BaseChatModel,
    *,
    exchange: Sequence[dict[str, str]],
    stored: Sequence[Fact],
    style: Style,
    method: str,
) -> MemoryOutput:
    messages = [
        agent_system(AGENT, SYSTEM),
        user_message(
            conversation(exchange),
            blocks("persona", "fact", [f.text for f in stored], STORED_PREFIX),
            block("persona", style.describe() or "(none)", kind="style"),
        ),
    ]
    return await call_structured(model, MemoryOutput, messages, agent=AGENT, method=method)
