"""Untrusted run contexts (LangGraph Server clients) change how a turn runs, never where it goes."""

from __future__ import annotations

from redraft.config import RUN_SETTINGS, RefinerConfig, RunSettings
from redraft.graphs.refine import build_graph, graph
from redraft.testing import ScriptedChatModel


def test_the_served_graph_takes_only_run_settings():
    schema = graph.get_context_jsonschema()
    assert set(schema["properties"]) == set(RUN_SETTINGS)
    for secret in ("api_key", "base_url", "database_url", "home", "kb_path", "model"):
        assert secret not in schema["properties"]


def test_run_settings_keep_the_fields_limits():
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        RunSettings(max_rounds=0)
    assert RunSettings(**{"base_url": "http://attacker.example", "strategy": "none"}).model_dump(
        exclude_unset=True
    ) == {"strategy": "none"}


async def test_untrusted_context_overrides_only_what_it_sets():
    model = ScriptedChatModel()
    config = RefinerConfig(api_key="server-key", planner="all", critics=["coherence"])
    compiled = build_graph(config, model=model, context_schema=RunSettings)
    state = await compiled.ainvoke(
        {"request": {"messages": [{"role": "user", "content": "hi"}]}},
        context={"strategy": "none", "base_url": "http://attacker.example", "api_key": "x"},
    )
    # strategy none: only the responder ran; nothing else about the server config changed
    assert [c.agent for c in model.calls] == ["responder"]
    assert state["reply"]
