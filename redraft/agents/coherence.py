"""Coherence critic: does the reply hold together with the dialogue so far?"""

from __future__ import annotations

from redraft.agents.prompting import block, conversation
from redraft.state import CriticTask

ASPECT = "coherence"
READS = ("conversation", "reply")

# Enough dialogue to catch contradictions without paying for a whole long thread.
HISTORY_TURNS = 20

SYSTEM = """\
You are the coherence critic of a chatbot. You check a draft reply against the conversation so
far (numbered turns, newest last; the reply answers the last user turn).
- Issues: a contradiction with an earlier assistant turn (quote that turn and give its number in
  `evidence`, e.g. "turn 3"), a question of the user left unanswered, drift away from the user's
  last turn, needless repetition, or a reply that is not logically consistent in itself.
- Quote the problematic part of the reply as `span`, explain in `problem`, and give the coherent
  wording as `fix`.
Verdict `pass` when the reply follows the conversation well, otherwise `revise`.
"""


def render(task: CriticTask) -> str:
    return "\n\n".join(
        [conversation(task["history"], last=HISTORY_TURNS), block("reply", task["reply"])]
    )
