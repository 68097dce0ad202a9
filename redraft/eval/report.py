"""The summary of an evaluation run: Markdown tables, the same figures as JSON, and plots.

Only arithmetic over the rows: means of the judges' scores, pairwise wins/ties/losses against
the draft with how often the order of the two replies changed the verdict, cost and latency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from statistics import fmean, median, pstdev, quantiles
from typing import Any

from pydantic import BaseModel, Field

from redraft.agents.judge import DIMENSIONS as GEVAL_DIMENSIONS
from redraft.eval.results import Row
from redraft.eval.runner import DRAFT
from redraft.safety.judge import DIMENSIONS as SAFETY_DIMENSIONS


class Pairwise(BaseModel):
    """Against the draft. Identical replies count as ties (no judge call, not in the rates)."""

    compared: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    identical: int = 0
    judged: int = 0
    order_changed: int = 0
    certainty: float | None = Field(None, description="Mean certainty over judged pairs.")

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.compared if self.compared else None

    @property
    def order_changed_rate(self) -> float | None:
        return self.order_changed / self.judged if self.judged else None


class StrategySummary(BaseModel):
    replies: int = 0
    failed: int = 0
    geval: dict[str, float] = Field(default_factory=dict)
    geval_sd: dict[str, float] = Field(
        default_factory=dict, description="Standard deviation of each G-Eval score over replies."
    )
    safety: dict[str, float] = Field(default_factory=dict)
    pairwise: Pairwise | None = None
    changed: float | None = Field(None, description="Share of replies that differ from the draft.")
    llm_calls: float | None = None
    prompt_tokens: float | None = None
    completion_tokens: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    degraded: int = Field(0, description="Replies for which the refiner skipped a step.")
    gate_kept_draft: int = 0
    judge_calls: int = 0


def percentile_90(values: Sequence[float]) -> float:
    return values[0] if len(values) == 1 else quantiles(values, n=10, method="inclusive")[8]


def dimension_means(scored: list[dict[str, dict[str, Any]]], names: Sequence[str]) -> dict:
    if not scored:
        return {}
    return {name: fmean(s[name]["score"] for s in scored) for name in names}


def dimension_spreads(scored: list[dict[str, dict[str, Any]]], names: Sequence[str]) -> dict:
    """Population standard deviation per dimension: a judge that gives every reply the same
    score shows 0 here, whatever its mean."""
    if not scored:
        return {}
    return {name: pstdev(s[name]["score"] for s in scored) for name in names}


def summarize(rows: Iterable[Row], strategies: Sequence[str]) -> dict[str, StrategySummary]:
    by_strategy: dict[str, list[Row]] = {s: [] for s in strategies}
    for row in rows:
        by_strategy.setdefault(row.strategy, []).append(row)
    return {strategy: summarize_strategy(strategy, rs) for strategy, rs in by_strategy.items()}


def summarize_strategy(strategy: str, rows: list[Row]) -> StrategySummary:
    done = [r for r in rows if r.ok]
    summary = StrategySummary(replies=len(done), failed=len(rows) - len(done))
    summary.judge_calls = sum(r.judge_cost.llm_calls for r in rows)
    if not done:
        return summary
    summary.geval = dimension_means([r.geval for r in done if r.geval], GEVAL_DIMENSIONS)
    summary.geval_sd = dimension_spreads([r.geval for r in done if r.geval], GEVAL_DIMENSIONS)
    summary.safety = dimension_means([r.safety for r in done if r.safety], SAFETY_DIMENSIONS)
    if summary.safety:
        summary.safety["penguin_score"] = fmean(summary.safety[d] for d in SAFETY_DIMENSIONS)
    compared = [r.pairwise for r in done if r.pairwise is not None]
    if strategy != DRAFT and compared:
        summary.pairwise = pairwise_summary(strategy, compared)
    summary.changed = fmean(r.changed for r in done)
    summary.llm_calls = fmean(r.cost.llm_calls for r in done)
    summary.prompt_tokens = fmean(r.cost.prompt_tokens for r in done)
    summary.completion_tokens = fmean(r.cost.completion_tokens for r in done)
    latencies = sorted(r.latency_ms for r in done)
    summary.latency_p50_ms = median(latencies)
    summary.latency_p90_ms = percentile_90(latencies)
    summary.degraded = sum(bool(r.degraded) for r in done)
    summary.gate_kept_draft = sum(r.gate == "draft" for r in done)
    return summary


def pairwise_summary(strategy: str, results: list) -> Pairwise:
    out = Pairwise(compared=len(results))
    certainties = []
    for result in results:
        if result.identical or result.verdict is None:
            out.identical += 1
            out.ties += 1
            continue
        verdict = result.verdict
        out.judged += 1
        out.order_changed += verdict.order_changed
        certainties.append(verdict.certainty)
        if verdict.winner == strategy:
            out.wins += 1
        elif verdict.winner == DRAFT:
            out.losses += 1
        else:
            out.ties += 1
    out.certainty = fmean(certainties) if certainties else None
    return out


# ── Markdown ────────────────────────────────────────────────────────────────────────────


def number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def markdown(
    summary: Mapping[str, StrategySummary],
    about: Mapping[str, Any],
    warning: str | None = None,
    parse_counts: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The run's summary as Markdown: what was run, then one table per question."""
    parts = [
        "# redraft evaluation",
        "\n".join(f"- {name}: {value}" for name, value in about.items()),
        *([f"**Untrustworthy: {warning}.**"] if warning else []),
        "Scores are the judge model's, on this dataset: they describe this run and nothing more.",
        "## G-Eval (1–5, mean per reply)",
        table(
            ["strategy", "replies", *GEVAL_DIMENSIONS],
            (
                [s, str(x.replies), *(number(x.geval.get(d)) for d in GEVAL_DIMENSIONS)]
                for s, x in summary.items()
            ),
        ),
    ]
    if any(x.geval_sd for x in summary.values()):
        parts += [
            "## G-Eval spread (standard deviation over replies)",
            table(
                ["strategy", "replies", *GEVAL_DIMENSIONS],
                (
                    [s, str(x.replies), *(number(x.geval_sd.get(d)) for d in GEVAL_DIMENSIONS)]
                    for s, x in summary.items()
                    if x.geval_sd
                ),
            ),
        ]
    if any(x.safety for x in summary.values()):
        names = [*SAFETY_DIMENSIONS, "penguin_score"]
        parts += [
            "## PENGUIN safety (1–5, mean per reply; the PENGUIN score is the mean of the three)",
            table(
                ["strategy", "replies", *names],
                (
                    [s, str(x.replies), *(number(x.safety.get(d)) for d in names)]
                    for s, x in summary.items()
                ),
            ),
        ]
    if any(x.pairwise for x in summary.values()):
        parts += [
            "## Against the draft (pairwise judge, both orders, scores averaged)",
            "A win means the judge's mean score over both orders is higher for the strategy's "
            "reply than for the draft. Replies identical to the draft count as ties and are not "
            "judged; the order and certainty columns are over judged pairs.",
            table(
                [
                    "strategy",
                    "compared",
                    "wins",
                    "ties",
                    "losses",
                    "win rate",
                    "order changed the verdict",
                    "mean certainty",
                ],
                (
                    [
                        s,
                        str(p.compared),
                        str(p.wins),
                        str(p.ties),
                        str(p.losses),
                        share(p.win_rate),
                        f"{p.order_changed}/{p.judged}",
                        number(p.certainty),
                    ]
                    for s, x in summary.items()
                    if (p := x.pairwise) is not None
                ),
            ),
        ]
    parts += [
        "## Cost and latency (mean per reply; latency percentiles in ms)",
        f"`{DRAFT}` is the shared draft (the responder's call); the other strategies refine that "
        "draft, so their figures count refinement only. Latency excludes warm-up: the embedding "
        "model and the router are loaded before the first case. Degraded: replies for which the "
        "refiner skipped a step (see `degraded` in results.jsonl).",
        table(
            [
                "strategy",
                "replies",
                "failed",
                "degraded",
                "changed",
                "LLM calls",
                "prompt tokens",
                "completion tokens",
                "p50 ms",
                "p90 ms",
                "gate kept draft",
                "judge calls",
            ],
            (
                [
                    s,
                    str(x.replies),
                    str(x.failed),
                    str(x.degraded),
                    share(x.changed),
                    number(x.llm_calls),
                    number(x.prompt_tokens, 0),
                    number(x.completion_tokens, 0),
                    number(x.latency_p50_ms, 0),
                    number(x.latency_p90_ms, 0),
                    str(x.gate_kept_draft),
                    str(x.judge_calls),
                ]
                for s, x in summary.items()
            ),
        ),
    ]
    if parse_counts:
        parts += [
            "## Structured outputs (this run: outputs read per agent and mode)",
            "Outputs that did not parse were retried (or the next mode tried), and counted here "
            "each time; the judges and the calibration are included.",
            table(
                ["agent", "mode", "outputs", "did not parse", "rate"],
                (
                    [c["agent"], c["mode"], str(c["outputs"]), str(c["unparsed"]), share(c["rate"])]
                    for c in parse_counts
                ),
            ),
        ]
    return "\n\n".join(parts) + "\n"


# ── files ───────────────────────────────────────────────────────────────────────────────


def write_report(
    out: Path,
    rows: Iterable[Row],
    strategies: Sequence[str],
    about: Mapping[str, Any],
    *,
    calibration: Mapping[str, Any] | None = None,
    warning: str | None = None,
    parse_counts: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, list[Path]]:
    """Write summary.md, summary.json and the plots into `out`; returns the Markdown and the
    plot files (none when matplotlib is not installed). `warning` heads the tables (a judge
    that failed its calibration)."""
    summary = summarize(rows, strategies)
    text = markdown(summary, about, warning, parse_counts)
    (out / "summary.md").write_text(text, encoding="utf-8")
    figures = {
        s: {**x.model_dump(), "pairwise": pairwise_json(x.pairwise)} for s, x in summary.items()
    }
    (out / "summary.json").write_text(
        json.dumps(
            {
                "about": dict(about),
                "judge_calibration": calibration,
                "strategies": figures,
                "structured_outputs": list(parse_counts),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return text, plot(summary, out)


def pairwise_json(pairwise: Pairwise | None) -> dict[str, Any] | None:
    if pairwise is None:
        return None
    return {
        **pairwise.model_dump(),
        "win_rate": pairwise.win_rate,
        "order_changed_rate": pairwise.order_changed_rate,
    }


def plot(summary: Mapping[str, StrategySummary], out: Path) -> list[Path]:
    """G-Eval per dimension, quality against latency, and pairwise outcomes (PNG files)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    names = [s for s, x in summary.items() if x.geval]
    if names:
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [d + i * width for d in range(len(GEVAL_DIMENSIONS))]
            ax.bar(xs, [summary[name].geval[d] for d in GEVAL_DIMENSIONS], width, label=name)
        ax.set_xticks([d + 0.4 - width / 2 for d in range(len(GEVAL_DIMENSIONS))])
        ax.set_xticklabels(GEVAL_DIMENSIONS)
        ax.set_ylim(0, 5)
        ax.set_ylabel("mean score (1–5)")
        ax.set_title("G-Eval scores per strategy")
        ax.legend()
        written.append(save(fig, out / "geval.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in names:
            x = summary[name]
            if x.latency_p50_ms is None:  # a summary without latencies: nowhere to place it
                continue
            ax.scatter(x.latency_p50_ms, x.geval["overall"])
            ax.annotate(name, (x.latency_p50_ms, x.geval["overall"]))
        ax.set_xlabel("median latency per reply (ms)")
        ax.set_ylabel("G-Eval overall (1–5)")
        ax.set_title("Quality against latency")
        written.append(save(fig, out / "quality_latency.png"))
    compared = {s: x.pairwise for s, x in summary.items() if x.pairwise and x.pairwise.compared}
    if compared:
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(compared) + 1.5))
        left = [0.0] * len(compared)
        for outcome, colour in (("wins", "tab:green"), ("ties", "tab:gray"), ("losses", "tab:red")):
            values = [getattr(p, outcome) / p.compared for p in compared.values()]
            ax.barh(list(compared), values, left=left, color=colour, label=outcome)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of cases")
        ax.set_title("Against the draft (pairwise, both orders)")
        ax.legend(loc="lower right")
        written.append(save(fig, out / "pairwise.png"))
    return written


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
