"""Runs any registered critic: its fixed prompt, its slice of the context, a Critique back."""

from __future__ import annotations

from types import ModuleType

from langchain_core.language_models import BaseChatModel

from redraft.agents.prompting import agent_system, user_message
from redraft.llm import call_structured
from redraft.state import CriticOutput, CriticTask, Critique


async def run_critic(
    critic: ModuleType, model: BaseChatModel, task: CriticTask, method: str
) -> Critique:
    messages = [agent_system(critic.ASPECT, critic.SYSTEM), user_message(critic.render(task))]
    output = await call_structured(
        model, CriticOutput, messages, agent=critic.ASPECT, method=method
    )
    critique = Critique(aspect=critic.ASPECT, round=task["round"], **output.model_dump())
    if critique.verdict == "pass":
        critique.issues = []
    elif critique.verdict == "revise" and not critique.issues:
        # A revise with nothing to apply changes nothing: treat it as a pass.
        critique.verdict = "pass"
    return critique
