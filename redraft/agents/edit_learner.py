"""Edit learner (CIPHER): the lasting preference a user's edit of a reply expresses.

CIPHER (learning latent preferences from user edits) infers a natural-language preference from
each edit and stores it with the context; later turns use the preferences of the nearest past
contexts.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from redraft.agents.prompting import agent_system, block, user_message
from redraft.llm.calls import call_structured
from redraft.personas.model import MAX_TEXT_CHARS

AGENT = "edit_learner"

SYSTEM = """\
A user edited a chatbot's reply before using it. Compare the original reply with the edited one,
given what the reply answered, and state the user's preference that the edit expresses as one
short instruction for future replies (e.g. "Use bullet points and stay under 80 words"). Describe
the kind of reply the user wants, not this one answer. Leave `preference` empty when the edit only
fixes a typo or a fact and says nothing about what the user prefers.
"""


class EditLearnerOutput(BaseModel):
    preference: str = Field(
        "", max_length=MAX_TEXT_CHARS, description="The preference, or empty when there is none."
    )


async def infer_preference(
    model: BaseChatModel, *, context: str, reply: str, edited_reply: str, method: str
) -> str:
    messages = [
        agent_system(AGENT, SYSTEM),
        user_message(
            block("query", context),
            block("reply", reply, version="original"),
            block("reply", edited_reply, version="edited"),
        ),
    ]
    output = await call_structured(model, EditLearnerOutput, messages, agent=AGENT, method=method)
    return output.preference.strip()
