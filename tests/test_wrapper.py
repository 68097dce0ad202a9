"""`RefinedChatModel` inside a small LangChain chain; the base model is ChatOpenAI over real HTTP
to a FakeProvider."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from pydantic import ValidationError

from redraft import RefinedChatModel, RefinerConfig
from redraft.testing import FakeProvider, ScriptedChatModel
from tests.conftest import PASS, plan, revise

REFINED = "Paris is the capital of France, and it has about 2.1 million inhabitants."


@pytest.fixture
def base_model(provider: FakeProvider) -> ChatOpenAI:
    # stream_usage: the editor streams, and its tokens are reported only with it
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=provider.base_url,
        api_key="k",
        max_retries=0,
        stream_usage=True,
    )


@pytest.fixture
def llm(base_model, tmp_path) -> RefinedChatModel:
    config = RefinerConfig(planner="llm", checkpointer="memory", home=tmp_path)
    return RefinedChatModel(base_model, config)


def chain(llm: RefinedChatModel):
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a travel guide."), ("human", "{question}")]
    )
    return prompt | llm | StrOutputParser()


def script_fix(provider: FakeProvider) -> None:
    provider.script("responder", "Paris has 5 million people.")
    provider.script("planner", plan("factuality"))
    provider.script("factuality", revise("5 million", "about 2.1 million"))
    provider.script("editor", {"changes": [], "reply": REFINED})


def test_sync_chain_returns_the_refined_reply(llm, provider):
    script_fix(provider)
    assert chain(llm).invoke({"question": "Tell me about Paris."}) == REFINED
    # the base model drafted from the chain's own prompt
    drafted = str(provider.calls_for("responder")[0].messages)
    assert "You are a travel guide." in drafted and "Tell me about Paris." in drafted
    assert [c.agent for c in provider.calls] == ["responder", "planner", "factuality", "editor"]


async def test_async_chain(llm, provider):
    script_fix(provider)
    assert await chain(llm).ainvoke({"question": "Tell me about Paris."}) == REFINED


async def test_streaming_chain_streams_the_reply_as_written(llm, provider):
    script_fix(provider)
    parts = [part async for part in chain(llm).astream({"question": "Tell me about Paris."})]
    assert "".join(parts) == REFINED
    assert len([p for p in parts if p]) > 1


def test_sync_stream_yields_the_reply(llm, provider):
    provider.script("planner", {"steps": []})
    chunks = list(llm.stream("hello"))
    assert "".join(str(c.content) for c in chunks) == "Scripted reply to: hello"


async def test_the_result_rides_along_with_the_message(llm, provider):
    script_fix(provider)
    message = await llm.ainvoke([HumanMessage("Tell me about Paris.")])
    assert isinstance(message, AIMessage) and message.content == REFINED
    details = message.response_metadata["redraft"]
    assert details["draft"] == "Paris has 5 million people." and details["changed"]
    assert message.usage_metadata["total_tokens"] == sum(
        c.usage["total_tokens"] for c in provider.calls
    )


async def test_per_call_fields_reach_the_turn(llm, provider):
    provider.script("planner", plan("factuality", "personalization"))
    provider.script("factuality", PASS)
    provider.script("personalization", PASS)
    bound = llm.bind(knowledge=["Paris has 2.1 million inhabitants."], persona=["likes data"])
    await bound.ainvoke("How big is Paris?")
    assert "2.1 million inhabitants" in str(provider.calls_for("factuality")[0].messages)
    assert "likes data" in str(provider.calls_for("personalization")[0].messages)


async def test_threads_via_thread_id(llm, provider):
    provider.script("responder", "First.", "Second.")
    provider.set_default("planner", {"steps": []})
    await llm.ainvoke("hello", thread_id="lc-thread")
    await llm.ainvoke("more", thread_id="lc-thread")
    seen = [m["content"] for m in provider.calls_for("responder")[1].messages[1:]]
    assert seen == ["hello", "First.", "more"]


def test_roles_per_model(base_model, provider, tmp_path):
    critic = ScriptedChatModel()
    critic.script("factuality", PASS)
    provider.script("planner", plan("factuality"))
    config = RefinerConfig(planner="llm", checkpointer="memory", home=tmp_path)
    llm = RefinedChatModel(base_model, config, models={"critic": critic})
    llm.invoke("hi")
    assert [c.agent for c in critic.calls] == ["factuality"]
    assert provider.calls_for("factuality") == []


@pytest.mark.parametrize(
    ("messages", "kwargs", "field"),
    [
        ([HumanMessage("hi"), ChatMessage("42", role="wizard")], {}, "messages.1.role"),
        ([HumanMessage("hi"), ToolMessage("42", tool_call_id="")], {}, "tool_call_id"),
        ([HumanMessage("hi")], {"colour": "red"}, "colour"),
        ([AIMessage("only me")], {}, "user message"),
    ],
)
def test_bad_input_names_the_field(llm, provider, messages, kwargs, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        llm.invoke(messages, **kwargs)
    assert provider.calls == []
