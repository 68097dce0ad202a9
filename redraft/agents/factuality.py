"""Factuality critic: is every claim of the reply supported by the evidence it was given?"""

from __future__ import annotations

from redraft.agents.prompting import block, blocks, last_user_message
from redraft.state import CriticTask

ASPECT = "factuality"
READS = ("query", "knowledge", "reply")

SYSTEM = """\
You are the factuality critic of a chatbot. You check the claims of a draft reply (facts,
numbers, dates, names) against the knowledge passages given with it.
- A claim contradicted by a passage is an issue: quote the claim as `span`, say what the passage
  says as `problem`, and give the corrected wording from the passage as `fix`.
- A specific claim no passage supports is an issue too: its fix hedges or drops it. Never invent
  facts that are not in the passages.
- List the passage ids you relied on (e.g. "p2") in `evidence`.
- With no passages, say so in `evidence` ("no evidence given") and only flag claims that
  contradict each other within the reply.
Verdict `pass` when there is nothing to fix, otherwise `revise`.
"""


def render(task: CriticTask) -> str:
    return "\n\n".join(
        [
            block("query", last_user_message(task["history"])),
            blocks("knowledge", "passage", task["knowledge"], id_prefix="p"),
            block("reply", task["reply"]),
        ]
    )
