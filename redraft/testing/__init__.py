"""Offline test doubles, public so users can test their redraft integrations without a provider.

- `ScriptedChatModel`: an in-process LangChain chat model scripted per agent.
- `FakeProvider`: an OpenAI-compatible HTTP server, for the real ChatOpenAI → HTTP path.
Agents are told apart by the `[agent: NAME]` marker that starts every redraft system prompt.
"""

from redraft.testing.agents import agent_of
from redraft.testing.fake_provider import Fail, FakeProvider, Fault, ToolCall
from redraft.testing.schemas import instance_for_schema
from redraft.testing.scripted import ScriptedChatModel

__all__ = [
    "Fail",
    "FakeProvider",
    "Fault",
    "ScriptedChatModel",
    "ToolCall",
    "agent_of",
    "instance_for_schema",
]
