"""Runs any registered critic: its fixed prompt, its slice of the context, a Critique back.

A critic module has ASPECT, SYSTEM and render(task). Optional hooks, for critics that need more:
OUTPUT (its output schema, a CriticOutput subclass), `async prepare(task, cfg)` (adds context
before the call), `finalize(output, task, cfg)` (turns the output into a Critique, enforcing its
rules) and `fallback(task)` (the Critique to use when the call fails, instead of skipping it).
"""

from __future__ import annotations

from types import ModuleType

from langchain_core.language_models import BaseChatModel

from redraft.agents.prompting import agent_system, user_message
from redraft.config import RefinerConfig
from redraft.llm import call_structured
from redraft.state import CriticOutput, CriticTask, Critique


async def run_critic(
    critic: ModuleType, model: BaseChatModel, task: CriticTask, cfg: RefinerConfig
) -> Critique:
    prepare = getattr(critic, "prepare", None)
    if prepare is not None:
        task = await prepare(task, cfg)
    schema = getattr(critic, "OUTPUT", CriticOutput)
    messages = [agent_system(critic.ASPECT, critic.SYSTEM), user_message(critic.render(task))]
    output = await call_structured(
        model, schema, messages, agent=critic.ASPECT, method=cfg.structured_output
    )
    finalize = getattr(critic, "finalize", None)
    if finalize is not None:
        return finalize(output, task, cfg)
    critique = Critique(aspect=critic.ASPECT, round=task["round"], **output.model_dump())
    if critique.verdict == "pass":
        critique.issues = []
    elif critique.verdict == "revise" and not critique.issues:
        # A revise with nothing to apply changes nothing: treat it as a pass.
        critique.verdict = "pass"
    return critique
