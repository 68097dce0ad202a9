"""`redraft demo`: four turns through the real graph, offline.

A `ScriptedChatModel` answers for every agent with responses written for this walk-through, so
the demo needs no key and no network, yet what runs is the real thing: the graph, the planner's
routing, concurrent critics, the editor's merge, a thread that remembers the conversation, and
the safety agent pausing a turn to ask the user first (a LangGraph interrupt, then a resume).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from redraft.cli.render import cost_view, critiques_view, plan_view, turn_view
from redraft.config import RefinerConfig
from redraft.embeddings import LocalEmbeddings, local_model_installed
from redraft.refiner import Refiner
from redraft.safety.critic import EXAMPLES_K, path_library
from redraft.state import PenguinAttribute, RefineRequest, RefineResult
from redraft.testing.scripted import ScriptedChatModel

LATENCY_S = 0.1
"""Every scripted call waits this long, like a fast provider, so timings show the overlap of
the critics that run concurrently."""

INTRO = (
    "This demo runs offline. A scripted model stands in for the LLM: every draft, plan, "
    "critique and edit below was written in advance for this walk-through, and no network "
    "or API key is used.\n"
    "Everything else is real: the LangGraph graph, the planner's routing, critics running in "
    "parallel, the editor's merge, a thread that remembers the conversation, and the safety "
    "agent pausing a turn to ask the user before it answers. Each scripted call waits "
    f"{LATENCY_S * 1000:.0f} ms, like a fast provider."
)


@dataclass(frozen=True)
class Scene:
    """One turn of the walk-through: what the user sends and what each agent will answer."""

    title: str
    point: str
    message: str
    script: dict[str, list[Any]]
    persona: list[str] = field(default_factory=list)
    knowledge: list[str] = field(default_factory=list)
    thread: str = "paris"
    answer: str | None = None
    """The user's reply to the safety agent's question, when the turn asks one."""


FACT_FIX = Scene(
    title="a factual fix",
    point="The draft gets a date wrong; the planner sends only the factuality critic, which "
    "cites the passage, and the editor corrects the date and nothing else.",
    message="When was the Eiffel Tower finished, and how tall is it?",
    knowledge=[
        "Construction of the Eiffel Tower began in January 1887 and was completed in March "
        "1889, in time for the Exposition Universelle.",
        "With its antennas the Eiffel Tower is 330 metres tall; without them it measures "
        "about 300 metres.",
    ],
    script={
        "responder": [
            "The Eiffel Tower was finished in 1887 and stands 330 metres tall with its "
            "antennas, about 300 metres without them."
        ],
        "planner": [
            {
                "steps": [
                    {
                        "aspect": "factuality",
                        "reason": "The draft gives a completion date and a height, and two "
                        "passages cover both.",
                    }
                ]
            }
        ],
        "factuality": [
            {
                "verdict": "revise",
                "issues": [
                    {
                        "span": "finished in 1887",
                        "problem": "Passage p1 says work began in 1887; the tower was "
                        "completed in March 1889.",
                        "fix": "finished in March 1889",
                    }
                ],
                "confidence": 0.95,
                "evidence": ["p1", "p2"],
            }
        ],
        "editor": [
            {
                "changes": [
                    {"aspect": "factuality", "change": "completion date 1887 → March 1889 (p1)"}
                ],
                "reply": "The Eiffel Tower was finished in March 1889 and stands 330 metres "
                "tall with its antennas, about 300 metres without them.",
            }
        ],
    },
)

PERSONA_FIT = Scene(
    title="a persona adaptation",
    point="The draft ignores what is known about the user; the personalization and coherence "
    "critics run side by side, and the editor applies the one that asks for changes.",
    message="Nice. Where should I eat near the tower tonight?",
    persona=["Is vegetarian.", "Prefers short answers.", "Travels on a student budget."],
    script={
        "responder": [
            "You're spoilt for choice around the Champ de Mars! For a true Parisian evening, "
            "book a classic brasserie and order the steak-frites with a glass of Bordeaux. If "
            "you feel like treating yourself, the restaurants inside the tower serve tasting "
            "menus with a spectacular view, though prices start well above 100 euros a head. "
            "Either way, finish with a stroll along the Seine once the tower starts sparkling."
        ],
        "planner": [
            {
                "steps": [
                    {
                        "aspect": "personalization",
                        "reason": "Diet, budget and preferred length all bear on a restaurant tip.",
                    },
                    {
                        "aspect": "coherence",
                        "reason": "A follow-up to the Eiffel Tower question: the tip should "
                        "stay near the tower.",
                    },
                ]
            }
        ],
        "personalization": [
            {
                "verdict": "revise",
                "issues": [
                    {
                        "span": "order the steak-frites with a glass of Bordeaux",
                        "problem": "The user is vegetarian (f1).",
                        "fix": "suggest a vegetarian dish, such as a mushroom galette",
                    },
                    {
                        "span": "prices start well above 100 euros a head",
                        "problem": "The user travels on a student budget (f3).",
                        "fix": "drop the splurge and point to somewhere affordable",
                    },
                    {
                        "span": "Either way, finish with a stroll along the Seine",
                        "problem": "The user prefers short answers (f2); the draft runs to "
                        "four sentences.",
                        "fix": "keep it to two sentences",
                    },
                ],
                "confidence": 0.9,
                "evidence": ["f1", "f2", "f3"],
            }
        ],
        "coherence": [{"verdict": "pass", "confidence": 0.85, "evidence": ["turn 2"]}],
        "editor": [
            {
                "changes": [
                    {"aspect": "personalization", "change": "steak-frites → vegetarian galette"},
                    {"aspect": "personalization", "change": "dropped the pricey tower menus"},
                    {"aspect": "personalization", "change": "cut to two sentences"},
                ],
                "reply": "You're spoilt for choice around the Champ de Mars! Try a crêperie "
                "on Rue Cler and order a mushroom galette: vegetarian, filling and cheap.",
            }
        ],
    },
)

CHIT_CHAT = Scene(
    title="chit-chat",
    point="Nothing to check: the planner chooses no critic, so the turn costs the draft and "
    "the plan only, with no critic and no editor call.",
    message="thanks!",
    script={
        "responder": ["You're welcome, enjoy Paris and bon appétit!"],
        "planner": [{"steps": []}],
    },
)

ASK_FIRST = Scene(
    title="a sensitive question",
    point="Nothing is known about this user, and the same advice could help one student and "
    "hurt another. The safety critic, guided by the paths of similar questions in its path "
    "library, pauses the turn to ask one kind question; the user's answer resumes it on the "
    "same thread, is kept, and the question is answered with it.",
    message="I failed two of my final exams and I have to tell my parents tonight. "
    "What should I do?",
    thread="exams",
    answer="Honestly, overwhelmed. I've barely slept this week.",
    script={
        "responder": [
            "Tell them straight away and present a clear plan: book the resits, make a strict "
            "revision timetable and study every evening until the exams.",
            "It makes sense to feel overwhelmed, and one bad exam season doesn't define you. "
            "Tonight, keep it simple: tell your parents what happened and that you're already "
            "looking into resits, then get some sleep before you plan anything more. If the "
            "worry keeps you from sleeping or eating, talk to someone you trust or your "
            "student counselling service.",
        ],
        "planner": [
            {
                "steps": [
                    {
                        "aspect": "safety",
                        "reason": "An exam failure and a hard conversation at home: a "
                        "sensitive topic, and nothing is known about the user.",
                    }
                ]
            },
            {
                "steps": [
                    {
                        "aspect": "safety",
                        "reason": "Still a sensitive topic; check the reply against what the "
                        "user just shared.",
                    }
                ]
            },
        ],
        "safety": [
            {
                "verdict": "ask",
                "confidence": 0.8,
                "evidence": ["turn 1"],
                "domain": "Education",
                "risk": "medium",
                "completeness": 1,
                "ask_attribute": "Emotional State",
                "question": "I'm sorry, that's a hard evening to face. Before I suggest "
                "anything: how are you feeling right now?",
            },
            {
                "verdict": "pass",
                "confidence": 0.85,
                "evidence": ["a1"],
                "domain": "Education",
                "risk": "medium",
                "completeness": 4,
            },
        ],
        "safety_answer": [{"answered": True, "value": "overwhelmed, barely sleeping"}],
    },
)

SCENES = (FACT_FIX, PERSONA_FIT, CHIT_CHAT, ASK_FIRST)


def demo_config() -> RefinerConfig:
    """Pinned settings, so `REDRAFT_*` variables cannot turn the walk-through into another."""
    return RefinerConfig(
        checkpointer="memory",
        strategy="parallel",
        planner="llm",
        critics=["factuality", "personalization", "coherence", "safety"],
        max_rounds=1,
        # Persona memory (an in-memory store) needs the local embedding model. It keeps the
        # safety answer in the user's profile; learning facts from turns would need calls that
        # this walk-through does not script, so it is off.
        memory=local_model_installed(),
        memory_learn=False,
        log_level="WARNING",
    )


async def walk_through(console: Console, model: ScriptedChatModel) -> list[RefineResult]:
    """Play every scene, printing each turn; returns the results in order (for tests).

    A scene that asks first gives two results: the paused turn (its reply is the question) and
    the turn resumed by the user's answer.
    """
    config = demo_config()
    if local_model_installed():
        # Loaded once for the persona store and the path library, so no turn's timings carry it.
        with console.status("Loading the local embedding model…"):
            await asyncio.to_thread(LocalEmbeddings().warm_up)
    results = []
    async with Refiner(config, model=model) as refiner:
        for number, scene in enumerate(SCENES, 1):
            for agent, responses in scene.script.items():
                model.script(agent, *responses)
            console.rule(f"Turn {number}: {scene.title}")
            console.print(Text(scene.point, style="dim"))
            console.print(_context(scene))
            if scene.answer is not None:
                console.print(await _similar_paths(console, config, scene.message))
            result = await refiner.arefine(
                RefineRequest(
                    messages=[{"role": "user", "content": scene.message}],
                    user_id="demo",
                    thread_id=scene.thread,
                    persona=scene.persona,
                    knowledge=scene.knowledge,
                )
            )
            results.append(result)
            if result.question is None or scene.answer is None:
                console.print(turn_view(result))
                continue
            console.print(_question_view(result))
            console.print(_said("user", scene.answer))
            resumed = await refiner.aresume("demo", scene.thread, scene.answer)
            console.print(await _resumed_view(refiner, resumed))
            results.append(resumed)
    return results


async def _similar_paths(console: Console, config: RefinerConfig, query: str) -> RenderableType:
    """The stored questions nearest this one, as the safety critic is shown them."""
    library = path_library(config)
    examples = await library.nearest(query, EXAMPLES_K) if library else []
    if not examples:
        return Text(
            "The path library holds no stored questions, so the safety critic asks without "
            "examples of what mattered for similar ones.",
            style="dim",
        )
    table = Table(
        title="Path library: the nearest stored questions (shown to the safety critic)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("similar question")
    table.add_column("similarity", justify="right")
    table.add_column("ask first")
    for example in examples:
        table.add_row(
            Text(example["query"]), f"{example['similarity']:.2f}", " → ".join(example["path"])
        )
    return table


def _question_view(result: RefineResult) -> Group:
    """The paused turn: why the critic asks, the draft it held back, and the question."""
    assert result.question is not None
    parts: list[RenderableType | None] = [plan_view(result.plan), critiques_view(result.critiques)]
    safety = next((c.safety for c in result.critiques if c.safety), None)
    if safety is not None:
        parts.append(
            Text(
                f"safety: domain {safety.domain}, risk {safety.risk}, background "
                f"{safety.completeness}/5, known: {', '.join(safety.known) or 'nothing'} "
                f"→ ask about {result.question.attribute}",
                style="cyan",
            )
        )
    parts += [
        Panel(
            Text(result.draft), title="draft (held back)", title_align="left", border_style="dim"
        ),
        Panel(
            Text(result.question.question),
            title="the question: the turn pauses here (LangGraph interrupt)",
            title_align="left",
            border_style="cyan",
        ),
        cost_view(result),
    ]
    return Group(*(part for part in parts if part is not None))


async def _resumed_view(refiner: Refiner, result: RefineResult) -> Group:
    """The resumed turn: the answer is kept and the original question answered with it."""
    profile = (
        (await (await refiner.personas()).get_profile("demo")) if refiner.config.memory else None
    )
    kept = Text()
    for asked in result.asked:
        if asked.declined:
            kept.append(f"The user declined to share {asked.attribute}; it won't be asked again.\n")
            continue
        kept.append(
            f"The answer resumes the paused turn and is kept as the user's {asked.attribute}; "
            "the original question is answered again with it.\n"
        )
        # A question's attribute is typed str; looking up any name is safe (an unknown one is
        # simply absent).
        name = cast(PenguinAttribute, asked.attribute)
        stored = profile.attributes.get(name) if profile else None
        if stored is not None:
            kept.append(
                f"Stored in the user's profile, so no other conversation asks it again: "
                f"{asked.attribute} = {stored.value!r} ({stored.source}).\n",
                style="cyan",
            )
    kept.rstrip()
    return Group(kept, turn_view(result))


def _said(who: str, message: str) -> Text:
    text = Text()
    text.append(f"{who}  ", style="bold")
    text.append(message)
    return text


def _context(scene: Scene) -> Text:
    text = Text()
    for prefix, items in (("p", scene.knowledge), ("f", scene.persona)):
        for n, item in enumerate(items, 1):
            text.append(f"{prefix}{n}  ", style="bold cyan")
            text.append(f"{item}\n", style="cyan")
    text.append_text(_said("user", scene.message))
    return text


def turn_labels() -> list[str]:
    """One label per result of `walk_through`."""
    labels = []
    for number, scene in enumerate(SCENES, 1):
        if scene.answer is None:
            labels.append(f"{number}. {scene.title}")
        else:
            labels += [f"{number}. {scene.title}: asks", f"{number}. … answered: resumed"]
    return labels


def _summary(results: list[RefineResult]) -> Table:
    table = Table(title="The turns", title_justify="left")
    table.add_column("turn")
    table.add_column("critics")
    table.add_column("LLM calls", justify="right")
    table.add_column("changed")
    table.add_column("ms", justify="right")
    for label, result in zip(turn_labels(), results, strict=True):
        table.add_row(
            label,
            ", ".join(result.plan.aspects) or "none",
            str(result.usage.llm_calls),
            "asked" if result.question else "yes" if result.changed else "no",
            f"{result.timings['total']:.0f}",
        )
    return table


def run_demo(console: Console | None = None) -> int:
    """Run the walk-through; returns the exit code (0)."""
    console = console or Console()
    console.print(Panel(INTRO, title="redraft demo", title_align="left", border_style="magenta"))
    model = ScriptedChatModel(latency_s=LATENCY_S)
    results = asyncio.run(walk_through(console, model))
    console.rule()
    console.print(_summary(results))
    console.print(
        "Try it on a real model: [bold]redraft chat[/] (needs OPENAI_API_KEY or OPENAI_BASE_URL)."
    )
    return 0
