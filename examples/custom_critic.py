"""A critic of your own, in its own file: Acme's brand voice, registered beside redraft's own.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... REDRAFT_MODEL=... python examples/custom_critic.py

Runs one turn through redraft's public API: a support bot's draft reply is checked by the
brand-voice critic defined here, the editor rewrites it if the critic asks for changes, and the
whole `RefineResult` is printed as JSON. Any OpenAI-compatible endpoint works (a local llama.cpp
or Ollama server too); without OPENAI_BASE_URL it is OpenAI's API. Two model calls: the
critic's, and the editor's.

The same file serves as a critic module for `redraft serve`, with no code of yours around it:

    PYTHONPATH=examples REDRAFT_CRITIC_MODULES=custom_critic:BRAND_VOICE redraft serve
"""

from __future__ import annotations

import os

from redraft import Critic, CriticTask, Refiner, RefinerConfig, RouterScoring, register_critic
from redraft.agents.prompting import block, last_user_message

SYSTEM = """\
You are the brand-voice critic of Acme's customer-support chatbot. Acme sounds warm, plain and
professional:
- no slang, no emoji, and at most one exclamation mark in a reply;
- it speaks to the customer as "you" and never blames them;
- it never talks down other companies or products.
Each part of the reply that breaks one of these rules is an issue: quote it as `span`, name the
rule in `problem`, and give wording in Acme's voice as `fix`. Judge the voice only: facts and
content are other critics' work. Verdict `pass` when the reply already sounds like Acme,
otherwise `revise`.
"""


def render(task: CriticTask) -> str:
    """The critic's slice of the turn: the customer's message and the reply, each in a block
    (what people wrote is data inside a block, never instructions)."""
    return "\n\n".join(
        [block("query", last_user_message(task["history"])), block("reply", task["reply"])]
    )


BRAND_VOICE = Critic(
    aspect="brand_voice",
    system=SYSTEM,
    render=render,
    planner_hint="the reply speaks for Acme to a customer, so it must sound like Acme",
    # After every built-in critic (10-40): a fix for facts or safety wins over one for tone.
    precedence=50,
    # For the embedding router: customer-support requests like these get the critic.
    router=RouterScoring(
        examples=(
            "How much does the Pro plan cost?",
            "I want a refund for my order.",
            "My package hasn't arrived yet.",
            "Why is your app so slow today?",
        )
    ),
)

REQUEST = {
    "messages": [{"role": "user", "content": "How much is the Pro plan per month?"}],
    # A draft written by your own bot: redraft refines it instead of writing one.
    "draft": "lol the Pro plan is like $12/month!!! way better than the junk other apps sell 😎",
}


def main() -> None:
    register_critic(BRAND_VOICE)
    # Only this critic, and planner="all" (every configured critic checks every turn), so the
    # example always shows it at work; list built-ins beside it (`critics`) and let the router
    # or the LLM planner choose per turn in a real deployment.
    config = RefinerConfig(
        planner="all",
        critics=["brand_voice"],
        memory=False,
        # A small model on a CPU can take minutes per call: wait up to 5 unless told otherwise.
        timeout_s=float(os.environ.get("REDRAFT_TIMEOUT_S", "300")),
    )
    with Refiner(config) as refiner:
        result = refiner.refine(REQUEST)
    print(result.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
