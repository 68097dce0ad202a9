"""redraft's five-call turn next to a lean peer making the same five calls, in the same run.

    python -m benchmarks.lean_peer --turns 60
    python -m benchmarks.lean_peer --turns 60 --json benchmarks/results/lean-peer.json

(`python -m benchmarks` runs it too, as part of the overhead part.) Three ways to make the same
five structured calls — four critics at once, then the editor — against one FakeProvider in its
own process that answers at once:

- redraft: `Refiner.arefine` with a handed-in draft and planner `all` (no draft or plan call),
  the four critics scripted to revise, the editor; memory, knowledge base, checkpointer off.
- lean peer: a LangGraph StateGraph with four critic nodes fanned out from START and a merge
  node; each node makes one `AsyncOpenAI.chat.completions.create` call with a json_schema
  response format and reads the answer with pydantic's `model_validate_json`.
- bare SDK: the same five calls and parses with no graph (four gathered, then one).

CPU per turn: of this process (every thread; the provider runs elsewhere) and of the event
loop's thread alone; turns interleaved, medians; ratios compare medians of one run (the
machine is shared). Then one call at a time, by part: the SDK's request, the parse, redraft's
whole call on its direct path and on LangChain's. Last, a pyinstrument profile of redraft's turn
(the event loop's thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict
from unittest import mock

from benchmarks.perf_common import (
    ASPECTS,
    DRAFT,
    HISTORY,
    KNOWLEDGE,
    PERSONA,
    median,
    refiner_config,
    request,
    script_turn,
    summary,
    turn_text,
)
from benchmarks.perf_provider import RemoteProvider, remote_provider
from redraft import Refiner
from redraft.embeddings import get_embeddings, local_model_installed
from redraft.llm import direct
from redraft.llm.calls import call_structured, make_chat_model
from redraft.state import CriticOutput, EditorOutput

MODEL = "gpt-4o-mini"
EMBEDDED_FIRST = ("redraft_query_embedded", "redraft_langchain")
WARM_UP = 5
CALLS = len(ASPECTS) + 1
PARSES = 200
"""A parse takes microseconds: timed over this many, reported per parse."""


# ── the lean peer ───────────────────────────────────────────────────────────────────────────


def _response_format(schema: type[Any]) -> dict[str, Any]:
    spec = schema.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": spec}}


CRITIC_FORMAT = _response_format(CriticOutput)
EDITOR_FORMAT = _response_format(EditorOutput)


def _prompt(agent: str, content: str) -> list[dict[str, str]]:
    """The agent marker tells the FakeProvider whose scripted answer to give."""
    system = f"[agent: {agent}]\nCheck the reply for {agent} and answer in the schema."
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def _context(query: str) -> str:
    history = "\n".join(f"{m['role']}: {m['content']}" for m in HISTORY)
    return "\n\n".join(
        [history, f"user: {query}", *PERSONA, *KNOWLEDGE, f"<reply>\n{DRAFT}\n</reply>"]
    )


async def structured(
    client: Any, agent: str, content: str, schema: type[Any], response_format: dict[str, Any]
) -> Any:
    """One structured call the bare way: the SDK's request, pydantic's parse."""
    response = await client.chat.completions.create(
        model=MODEL, messages=_prompt(agent, content), response_format=response_format
    )
    return schema.model_validate_json(response.choices[0].message.content)


class PeerState(TypedDict, total=False):
    query: str
    critiques: Annotated[list[CriticOutput], operator.add]
    reply: str


def build_peer(client: Any) -> Any:
    """The least LangGraph graph that makes the turn's calls: fan out, then merge."""
    from langgraph.graph import END, START, StateGraph

    def critic(aspect: str) -> Callable[[PeerState], Awaitable[dict[str, Any]]]:
        async def run(state: PeerState) -> dict[str, Any]:
            content = _context(state["query"])
            output = await structured(client, aspect, content, CriticOutput, CRITIC_FORMAT)
            return {"critiques": [output]}

        return run

    async def merge(state: PeerState) -> dict[str, Any]:
        issues = "\n".join(i.fix for c in state["critiques"] for i in c.issues)
        content = f"{_context(state['query'])}\n\n{issues}"
        output = await structured(client, "editor", content, EditorOutput, EDITOR_FORMAT)
        return {"reply": output.reply}

    graph = StateGraph(PeerState)
    for aspect in ASPECTS:
        graph.add_node(aspect, critic(aspect))
        graph.add_edge(START, aspect)
    graph.add_node("merge", merge)
    graph.add_edge(list(ASPECTS), "merge")
    graph.add_edge("merge", END)
    return graph.compile()


async def bare_turn(client: Any, query: str) -> str:
    """The same five calls with no graph at all."""
    content = _context(query)
    critiques = await asyncio.gather(
        *(structured(client, a, content, CriticOutput, CRITIC_FORMAT) for a in ASPECTS)
    )
    issues = "\n".join(i.fix for c in critiques for i in c.issues)
    output = await structured(
        client, "editor", f"{content}\n\n{issues}", EditorOutput, EDITOR_FORMAT
    )
    return output.reply


# ── measuring ───────────────────────────────────────────────────────────────────────────────

WAYS = ("redraft", "redraft_query_embedded", "redraft_langchain", "lean_peer", "bare_sdk")
"""`redraft`: the whole turn (nothing embedded the query: the safety critic's path library
looks it up by words). `redraft_query_embedded`: the same turn with the query's embedding made
before it (as persona memory makes it), so that the path library looks it up by meaning.
`redraft_langchain`: that turn on LangChain's provider path (the model given to `Refiner` as a
user's own chat model is; the path every model took before the direct one)."""
REDRAFTS = WAYS[:3]
PEERS = WAYS[3:]


def redraft_request(number: int) -> dict[str, Any]:
    return {**request(number), "draft": DRAFT}


async def _cpu_ms(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """CPU milliseconds of `work`: of the whole process, and of the event loop's thread."""
    process, thread = time.process_time(), time.thread_time()
    await work()
    return (time.process_time() - process) * 1000, (time.thread_time() - thread) * 1000


async def measure(
    provider: RemoteProvider, home: Path, *, turns: int, profile_turns: int = 30
) -> dict[str, Any]:
    """CPU per turn of redraft (with and without embedding the query in the turn), the lean
    peer and the bare calls, turns interleaved; then one call by part; then profiles."""
    import openai

    provider.configure(latency_s=0.0, tokens_per_s=None)
    script_turn(provider, ASPECTS)
    config = refiner_config(provider, home, planner="all", critics=list(ASPECTS))
    client = openai.AsyncOpenAI(base_url=provider.base_url, api_key="benchmark", max_retries=0)
    peer = build_peer(client)
    embeddings = get_embeddings(config) if local_model_installed() else None
    cpu: dict[str, list[float]] = {name: [] for name in WAYS}
    loop: dict[str, list[float]] = {name: [] for name in WAYS}
    calls_per_turn = []
    with mock.patch.object(direct, "register"):  # left unregistered: LangChain's path
        given = make_chat_model(config.model, config)
    async with client, Refiner(config) as refiner, Refiner(config, model=given) as on_langchain:

        async def embedded_first(number: int) -> None:
            if embeddings is not None:
                await embeddings.aembed_query(turn_text(number))

        ways: dict[str, Callable[[int], Awaitable[Any]]] = {
            "redraft": lambda n: refiner.arefine(redraft_request(n)),
            "redraft_query_embedded": lambda n: refiner.arefine(redraft_request(n)),
            "redraft_langchain": lambda n: on_langchain.arefine(redraft_request(n)),
            "lean_peer": lambda n: peer.ainvoke({"query": turn_text(n)}),
            "bare_sdk": lambda n: bare_turn(client, turn_text(n)),
        }
        for number in range(WARM_UP + turns):
            for index, (name, way) in enumerate(ways.items()):
                # each way its own queries: an embedding made for another's would be found
                query = len(WAYS) * number + index
                if name in EMBEDDED_FIRST:
                    await embedded_first(query)  # not measured
                before = provider.count()
                process_ms, loop_ms = await _cpu_ms(lambda w=way, n=query: w(n))
                if number >= WARM_UP:
                    cpu[name].append(process_ms)
                    loop[name].append(loop_ms)
                    if name.startswith("redraft"):
                        calls_per_turn.append(provider.count() - before)
        per_call = await call_parts(client, config, calls=max(20, turns))
        embedding = await query_embedding_ms(config, max(10, turns // 3))

        def embedded(chosen: Refiner) -> Callable[[int], Awaitable[Any]]:
            async def turn(number: int) -> None:
                await embedded_first(number)
                await chosen.arefine(redraft_request(number))

            return turn

        profiles = {
            "redraft": await profile_of(embedded(refiner), profile_turns),
            "redraft_langchain": await profile_of(embedded(on_langchain), profile_turns),
            "lean_peer": await profile_of(ways["lean_peer"], profile_turns),
        }
    p50 = {name: median(values) for name, values in cpu.items()}
    loop_p50 = {name: median(values) for name, values in loop.items()}
    return {
        "turn": f"{len(ASPECTS)} critics that revise, then the editor: {CALLS} calls, "
        "provider answering at once",
        "turns": turns,
        "calls_as_intended": all(c == CALLS for c in calls_per_turn),
        "cpu_ms": {name: summary(values) for name, values in cpu.items()},
        "loop_cpu_ms": {name: summary(values) for name, values in loop.items()},
        "ratio": {
            f"{mine}_to_{peer_name}": round(p50[mine] / p50[peer_name], 2)
            for mine in REDRAFTS
            for peer_name in PEERS
        },
        "query_embedding_ms": embedding,
        "per_call": per_call,
        "components": {
            name: components(profile["parts"], p50[way], loop_p50[way])
            for (name, profile), way in zip(
                profiles.items(),
                ("redraft_query_embedded", "redraft_langchain", "lean_peer"),
                strict=True,
            )
        },
        "profiles": profiles,
    }


async def call_parts(client: Any, config: Any, *, calls: int) -> dict[str, dict[str, float]]:
    """CPU of one call by part, each alone, CPU p50 in ms: the peer's whole call (SDK create +
    parse); the SDK's request as redraft's direct path makes it (`post` of redraft's body);
    pydantic's parse; redraft's `call_structured` on the direct path and on LangChain's."""
    from redraft.agents.prompting import agent_system, user_message

    content = _context(turn_text(0))
    model = make_chat_model(config.model, config)
    with mock.patch.object(direct, "register"):  # left unregistered: LangChain's path
        langchain_model = make_chat_model(config.model, config)
    target = direct.target_of(model)
    assert target is not None and direct.target_of(langchain_model) is None
    messages = [agent_system("coherence", "Check the reply."), user_message(content)]
    body = direct.request_body(target, messages, mode="json_schema", schema=CriticOutput)
    sample = await client.chat.completions.create(
        model=MODEL, messages=_prompt("coherence", content), response_format=CRITIC_FORMAT
    )
    raw = sample.choices[0].message.content

    async def parses() -> None:
        for _ in range(PARSES):
            CriticOutput.model_validate_json(raw)

    def redraft_call(chat: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: call_structured(
            chat, CriticOutput, messages, agent="coherence", method="json_schema"
        )

    parts: dict[str, Callable[[], Awaitable[Any]]] = {
        "sdk_create_and_parse": lambda: structured(
            client, "coherence", content, CriticOutput, CRITIC_FORMAT
        ),
        "sdk_post": lambda: direct.client_for(target).post(
            "/chat/completions", body=body, cast_to=bytes
        ),
        "parse": parses,
        "redraft_direct": redraft_call(model),
        "redraft_langchain": redraft_call(langchain_model),
    }
    rows: dict[str, dict[str, float]] = {}
    for name, part in parts.items():
        for _ in range(3):
            await part()
        times = [(await _cpu_ms(part))[0] for _ in range(calls)]
        if name == "parse":
            times = [t / PARSES for t in times]
        rows[name] = {"p50": round(median(times), 4), "n": len(times)}
    return rows


async def query_embedding_ms(config: Any, times: int) -> float | None:
    """CPU of embedding one query with the configured embeddings: what the safety critic's path
    library did each turn before it looked up by words (None without the local model)."""

    if config.embeddings == "local" and not local_model_installed():
        return None
    embeddings = get_embeddings(config)
    await embeddings.aembed_query(turn_text(0))  # loaded by the turns already; warm
    samples = [
        # texts no turn sent: the embeddings keep recent texts' vectors
        (await _cpu_ms(lambda n=n: embeddings.aembed_query(f"{turn_text(n)} (alone)")))[0]
        for n in range(times)
    ]
    return round(median(samples), 2)


def components(parts: list[dict[str, Any]], cpu_ms: float, loop_ms: float) -> dict[str, float]:
    """A turn's CPU (ms) by part: the event loop's thread split by the profile's shares, and
    the other threads (redraft's: the safety critic's query embedding, work sent to threads)."""
    split = {part["name"]: round(part["share"] * loop_ms, 2) for part in parts}
    return {**split, "other threads": round(max(0.0, cpu_ms - loop_ms), 2)}


HTTP_PACKAGES = {"openai", "httpx2", "httpcore2", "anyio", "h11", "sniffio", "httpx", "httpcore"}
"""The provider call's client stack: the openai SDK and the HTTP client beneath it."""


def part_of(frame: Any, owner: str) -> str:
    """What a profiled frame's time is spent on: a provider call (sticky for all beneath it),
    redraft's call layer (`redraft.llm`), redraft's graph, agents and turn, LangGraph,
    LangChain's callbacks, pydantic, else whatever called it (the event loop at the root)."""
    from benchmarks.perf_overhead import STDLIB, package_of

    if owner == "provider call":
        return owner
    package = package_of(frame.file_path)
    if package in HTTP_PACKAGES:
        return "provider call"
    if package == "redraft":
        return "redraft: calls" if "/redraft/llm/" in frame.file_path else "redraft: turn"
    if package in ("langgraph", "pydantic"):
        return package
    if package in ("langchain_core", "langsmith", "uuid_utils"):
        return "langchain_core"
    return owner if package == STDLIB else "other"


async def profile_of(work: Callable[[int], Awaitable[Any]], turns: int) -> dict[str, Any]:
    """A pyinstrument profile of `turns` turns on the event loop's thread: shares by part
    (`part_of`), by package (self time) and the costliest functions with what they call."""
    from pyinstrument import Profiler

    from benchmarks.perf_overhead import IDLE, STDLIB, package_of, summarise

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    for number in range(turns):
        await work(20_000 + number)
    profiler.stop()
    assert profiler.last_session is not None
    root = profiler.last_session.root_frame()
    tree = summarise(root)
    parts: dict[str, float] = {}
    stack: list[tuple[Any, str]] = [(root, "event loop")]
    while stack:
        frame, owner = stack.pop()
        if frame.function in IDLE and package_of(frame.file_path) == STDLIB:
            continue
        owner = part_of(frame, owner)
        parts[owner] = parts.get(owner, 0.0) + sum(c.time for c in frame.children if c.is_synthetic)
        stack.extend((c, owner) for c in frame.children if not c.is_synthetic)
    busy = sum(parts.values()) or 1.0

    def top(table: dict[str, float], count: int) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda item: -item[1])[:count]
        return [{"name": name, "share": round(s / busy, 3)} for name, s in ranked]

    return {
        "turns": turns,
        "parts": top(parts, 10),
        "packages": top(tree["packages"], 10),
        "inclusive": top(tree["inclusive"], 12),
    }


def render(data: dict[str, Any]) -> str:
    cpu, loop = data["cpu_ms"], data["loop_cpu_ms"]
    lines = [
        f"{data['turn']}; {data['turns']} turns each, interleaved",
        *(
            f"  {name:22} CPU per turn p50 {cpu[name]['p50']:7.2f} ms "
            f"(event loop's thread {loop[name]['p50']:7.2f} ms)"
            for name in WAYS
        ),
        *(f"  {name}: {value}" for name, value in data["ratio"].items()),
        f"  one query embedded (the safety critic's path library): "
        f"{data['query_embedding_ms']} ms CPU",
        "per call, CPU p50 ms:",
        *(f"  {name:22} {row['p50']:8.4f}" for name, row in data["per_call"].items()),
        "per turn by part (the event loop's thread by profile share), ms:",
        *(f"  {name:9} {json.dumps(row)}" for name, row in data["components"].items()),
    ]
    for name, profile in data["profiles"].items():
        lines += [
            f"profile of {name}'s turn ({profile['turns']} turns), self time by package:",
            "  " + ", ".join(f"{p['name']} {p['share']:.1%}" for p in profile["packages"]),
            "costliest with what they call:",
            *(f"  {p['share']:6.1%}  {p['name']}" for p in profile["inclusive"][:8]),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=60, help="measured turns of each (60)")
    parser.add_argument("--profile-turns", type=int, default=30, help="profiled turns (30)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.profile_turns < 1:
        parser.error("--turns and --profile-turns must be at least 1")

    async def run() -> dict[str, Any]:
        with remote_provider() as provider, tempfile.TemporaryDirectory() as home:
            return await measure(
                provider, Path(home), turns=args.turns, profile_turns=args.profile_turns
            )

    data = asyncio.run(run())
    print(render(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
