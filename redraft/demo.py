"""`redraft demo`: three turns through the real graph, offline.

A `ScriptedChatModel` answers for every agent with responses written for this walk-through, so
the demo needs no key and no network, yet what runs is the real thing: the graph, the planner's
routing, concurrent critics, the editor's merge and a thread that remembers the conversation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from redraft.config import RefinerConfig
from redraft.refiner import Refiner
from redraft.render import turn_view
from redraft.state import RefineRequest, RefineResult
from redraft.testing.scripted import ScriptedChatModel

LATENCY_S = 0.1
"""Every scripted call waits this long, like a fast provider, so timings show the overlap of
the critics that run concurrently."""

INTRO = (
    "This demo runs offline. A scripted model stands in for the LLM: every draft, plan, "
    "critique and edit below was written in advance for this walk-through, and no network "
    "or API key is used.\n"
    "Everything else is real: the LangGraph graph, the planner's routing, critics running in "
    f"parallel, the editor's merge, and one thread that remembers the conversation. Each "
    f"scripted call waits {LATENCY_S * 1000:.0f} ms, like a fast provider."
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

SCENES = (FACT_FIX, PERSONA_FIT, CHIT_CHAT)


def demo_config() -> RefinerConfig:
    """Pinned settings, so `REDRAFT_*` variables cannot turn the walk-through into another."""
    return RefinerConfig(
        checkpointer="memory",
        strategy="parallel",
        planner="llm",
        critics=["factuality", "personalization", "coherence"],
        max_rounds=1,
        log_level="WARNING",
    )


async def walk_through(console: Console, model: ScriptedChatModel) -> list[RefineResult]:
    """Play every scene on one thread, printing each turn; returns the results (for tests)."""
    results = []
    async with Refiner(demo_config(), model=model) as refiner:
        for number, scene in enumerate(SCENES, 1):
            for agent, responses in scene.script.items():
                model.script(agent, *responses)
            console.rule(f"Turn {number}: {scene.title}")
            console.print(Text(scene.point, style="dim"))
            console.print(_context(scene))
            result = await refiner.arefine(
                RefineRequest(
                    messages=[{"role": "user", "content": scene.message}],
                    user_id="demo",
                    thread_id="paris",
                    persona=scene.persona,
                    knowledge=scene.knowledge,
                )
            )
            console.print(turn_view(result))
            results.append(result)
    return results


def _context(scene: Scene) -> Text:
    text = Text()
    for prefix, items in (("p", scene.knowledge), ("f", scene.persona)):
        for n, item in enumerate(items, 1):
            text.append(f"{prefix}{n}  ", style="bold cyan")
            text.append(f"{item}\n", style="cyan")
    text.append("user  ", style="bold")
    text.append(scene.message)
    return text


def _summary(results: list[RefineResult]) -> Table:
    table = Table(title="The three turns", title_justify="left")
    table.add_column("turn")
    table.add_column("critics")
    table.add_column("LLM calls", justify="right")
    table.add_column("changed")
    table.add_column("ms", justify="right")
    for number, (scene, result) in enumerate(zip(SCENES, results, strict=True), 1):
        table.add_row(
            f"{number}. {scene.title}",
            ", ".join(result.plan.aspects) or "none",
            str(result.usage.llm_calls),
            "yes" if result.changed else "no",
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
