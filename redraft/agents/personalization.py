"""Personalization critic: does the reply fit this user's persona and preferences?"""

from __future__ import annotations

from redraft.agents.critic import Critic
from redraft.agents.prompting import block, blocks, last_user_message
from redraft.state import CriticTask

ASPECT = "personalization"

SYSTEM = """\
You are the personalization critic of a chatbot. You check a draft reply against what is known
about the user: facts about them, their situation, and their preferences for tone, length,
formality and language.
- An issue is a part of the reply that ignores or contradicts a persona fact, or a missed chance
  to use one that clearly matters to the query. Quote the part as `span`, name the fact in
  `problem`, and give the adapted wording as `fix`.
- Do not invent persona facts and do not force the persona into replies where it does not matter.
- List the fact ids you relied on (e.g. "f1") in `evidence`.
Verdict `pass` when the reply already fits the user, otherwise `revise`.
"""


def render(task: CriticTask) -> str:
    return "\n\n".join(
        [
            block("query", last_user_message(task["history"])),
            blocks("persona", "fact", task["persona"], id_prefix="f"),
            block("reply", task["reply"]),
        ]
    )


CRITIC = Critic(
    aspect=ASPECT,
    system=SYSTEM,
    render=render,
    planner_hint="what is known about the user should shape the reply",
    precedence=30,
)
