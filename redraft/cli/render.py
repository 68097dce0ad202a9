"""Rich views of one refined turn, shared by `redraft demo` and `redraft chat`.

Every piece of text that came from a user, a model or a provider is wrapped in `Text`, never
parsed as rich markup: a reply containing `[bold]` must print as written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from redraft.state import Critique, Degradation, Plan, RefineResult

VERDICT_STYLES = {"pass": "green", "revise": "yellow", "ask": "cyan", "block": "bold red"}
DELETED = "red strike"
INSERTED = "bold green"

_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")
_WORD = re.compile(r"\w+")


def word_diff(before: str, after: str) -> Text:
    """`before` → `after` word by word: deletions struck through in red, insertions in green.

    Punctuation is a token of its own, so "France" → "France." keeps the word. Whitespace is
    kept too (line breaks survive) but never anchors a match, which keeps the diff aligned on
    words rather than on the spaces between them.
    """
    diff = Text()
    for chunk in _chunks(_TOKEN.findall(before), _TOKEN.findall(after)):
        if len(chunk) == 1:
            diff.append(chunk[0])
        else:
            diff.append(chunk[0], style=DELETED)
            diff.append(chunk[1], style=INSERTED)
    return diff


def _chunks(old: list[str], new: list[str]) -> list[list[str]]:
    """`[kept]` and `[deleted, inserted]` chunks, in order.

    A rewrite matches stray words ("a", "and", commas) between its edits; a kept run of at
    most one word between two edits is folded into them, so a rewritten sentence reads as
    one deletion and one insertion instead of confetti.
    """
    matcher = difflib.SequenceMatcher(str.isspace, old, new, autojunk=False)
    opcodes = matcher.get_opcodes()
    chunks: list[list[str]] = []
    for index, (op, i1, i2, j1, j2) in enumerate(opcodes):
        deleted, inserted = "".join(old[i1:i2]), "".join(new[j1:j2])
        # Equal runs alternate with edits, so one inside the list sits between two edits.
        between_edits = 0 < index < len(opcodes) - 1
        if op == "equal" and not (between_edits and len(_WORD.findall(deleted)) <= 1):
            chunks.append([deleted])
        elif chunks and len(chunks[-1]) == 2:
            chunks[-1] = [chunks[-1][0] + deleted, chunks[-1][1] + inserted]
        else:
            chunks.append([deleted, inserted])
    return chunks


def diff_view(result: RefineResult) -> RenderableType:
    if result.question is not None:
        return Text("Asked: the draft is held back until the user answers.", style="yellow")
    if result.tool_calls:
        calls = ", ".join(c.function.name for c in result.tool_calls)
        return Text(f"Tool call ({calls}): returned as drafted, nothing to refine.", style="dim")
    if not result.changed:
        return Text("No change: the draft is the reply.", style="dim")
    return Panel(
        word_diff(result.draft, result.reply),
        title="draft → reply",
        title_align="left",
        border_style="blue",
    )


def plan_view(plan: Plan) -> RenderableType:
    """The critics chosen for the turn, each with the planner's reason."""
    if not plan.aspects:
        if plan.source in ("llm", "router"):
            why = "The planner chose no critic: nothing here needs checking, so no critic runs."
        else:
            why = f"No critic ran (plan: {plan.source})."
        return Text(why, style="dim")
    table = Table(title=f"Plan (planner: {plan.source})", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("critic", style="bold")
    table.add_column("why")
    for aspect in plan.aspects:
        table.add_row(aspect, Text(plan.reasons.get(aspect, "")))
    return table


def critiques_view(critiques: Sequence[Critique]) -> RenderableType | None:
    """One row per issue (or one per critique that passed), with the evidence it cites."""
    if not critiques:
        return None
    table = Table(title="Critiques", title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("critic", style="bold", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("issue")
    table.add_column("evidence", no_wrap=True)
    for critique in critiques:
        verdict = Text(critique.verdict, style=VERDICT_STYLES.get(critique.verdict, ""))
        evidence = Text(", ".join(critique.evidence), style="dim")
        issues = [_issue_text(i.span, i.problem, i.fix) for i in critique.issues] or [Text("—")]
        for n, issue in enumerate(issues):
            first = n == 0
            table.add_row(
                critique.aspect if first else "",
                verdict if first else "",
                issue,
                evidence if first else "",
            )
    return table


def _issue_text(span: str, problem: str, fix: str) -> Text:
    text = Text()
    text.append(f"“{span}”", style="italic")
    text.append(f"  {problem}\n")
    text.append("fix: ", style="dim")
    text.append(fix)
    return text


def degraded_view(degraded: Sequence[Degradation] | None) -> RenderableType | None:
    """What the turn skipped: the reply still came, but these steps did not count."""
    if not degraded:
        return None
    lines = Text(style="yellow")
    for item in degraded:
        lines.append(f"⚠ {item.step} skipped: {item.reason}\n")
    lines.rstrip()
    return lines


def cost_view(result: RefineResult) -> RenderableType:
    """Wall time per graph step next to LLM calls and tokens per agent.

    Critics run concurrently, so their times overlap: the total is less than the sum.
    """
    times = Table(title="Time per step", title_justify="left", box=box.SIMPLE_HEAD)
    times.add_column("step")
    times.add_column("ms", justify="right")
    for step, ms in result.timings.items():
        if step != "total":
            times.add_row(step, f"{ms:.0f}")
    times.add_row("total", f"{result.timings.get('total', 0):.0f}", style="bold")

    usage = Table(title="LLM calls per agent", title_justify="left", box=box.SIMPLE_HEAD)
    usage.add_column("agent")
    usage.add_column("calls", justify="right")
    usage.add_column("tokens in", justify="right")
    usage.add_column("tokens out", justify="right")
    for agent, spent in result.usage.by_agent.items():
        usage.add_row(
            agent, str(spent.calls), str(spent.prompt_tokens), str(spent.completion_tokens)
        )
    total = result.usage
    usage.add_row(
        "total",
        str(total.llm_calls),
        str(total.prompt_tokens),
        str(total.completion_tokens),
        style="bold",
    )

    grid = Table.grid(padding=(0, 4))
    grid.add_row(times, usage)
    return grid


def turn_view(result: RefineResult, *, show_draft: bool = False) -> Group:
    """Everything that explains one turn, in the order it happened."""
    parts: list[RenderableType | None] = []
    if show_draft:
        parts.append(
            Panel(Text(result.draft), title="draft", title_align="left", border_style="dim")
        )
    parts += [
        plan_view(result.plan),
        critiques_view(result.critiques),
        diff_view(result),
        degraded_view(result.degraded),
        Panel(Text(result.reply), title="reply", title_align="left", border_style="green"),
        cost_view(result),
    ]
    return Group(*(part for part in parts if part is not None))
