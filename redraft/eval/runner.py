"""Runs every case through each strategy and the judges, resumably and with bounded concurrency.

All strategies refine the same draft: per case, strategy `none` writes it once (its row is the
draft), and the other strategies get it as the request's `draft` — so their differences come from
refinement alone, as in MARA's comparison, and their cost columns count refinement only.
Each strategy runs through the public API (`Refiner(config with that strategy)`); the judges use
their own model. Rows are keyed by (case id, strategy) and written as soon as they are done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableLambda

from redraft.agents.judge import judge_reply
from redraft.agents.pairwise_judge import compare
from redraft.config import RefinerConfig
from redraft.errors import RedraftError, describe_os_error
from redraft.eval.datasets import EvalCase
from redraft.eval.results import Cost, Key, PairwiseResult, ResultsFile, Row
from redraft.llm.calls import UsageTracker
from redraft.parsing import parse_json
from redraft.refiner import Refiner
from redraft.safety.judge import judge_safety
from redraft.state import Usage

DRAFT = "none"
STRATEGIES: tuple[str, ...] = ("none", "self_refine", "sequential", "parallel")
JUDGES: tuple[str, ...] = ("geval", "pairwise", "safety")


class RunMismatchError(RedraftError, ValueError):
    """The output directory holds results made with other settings."""


class OutputDirError(RedraftError, ValueError):
    """The output directory cannot hold the results (a file is in the way, no permission...)."""


def check_run(out: Path, settings: Mapping[str, Any]) -> None:
    """Record the run's settings in `run.json`, or refuse to mix results of other settings."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out} is a file, not a directory: --out needs a directory")
    path = out / "run.json"
    if path.exists():
        try:
            recorded = parse_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise OutputDirError(f"cannot read {describe_os_error(exc)}") from None
        except ValueError as exc:  # not UTF-8, not JSON
            raise OutputDirError(f"{path} is not a run record: {exc}") from None
        if not isinstance(recorded, dict):
            raise OutputDirError(f"{path} is not a run record: expected a JSON object")
        changed = [k for k in settings if recorded.get(k) != settings[k]]
        if changed:
            diffs = ", ".join(f"{k}: {recorded.get(k)!r} → {settings[k]!r}" for k in changed)
            raise RunMismatchError(
                f"{out} holds results made with other settings ({diffs}); "
                "use another --out, or the same settings to resume"
            )
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(settings), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputDirError(f"cannot write the results: {describe_os_error(exc)}") from None


def cost(usage: Usage) -> Cost:
    return Cost(
        llm_calls=usage.llm_calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


async def tracked(tracker: UsageTracker, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` with `tracker` receiving the callbacks of every model call inside it."""

    async def run(_: None) -> None:
        await work()

    await RunnableLambda(run).ainvoke(None, config={"callbacks": [tracker]})


class Evaluation:
    """One evaluation run over `cases`; `finished` rows (from an earlier run) are skipped."""

    def __init__(
        self,
        cases: Sequence[EvalCase],
        *,
        config: RefinerConfig,
        judge: BaseChatModel,
        results: ResultsFile,
        strategies: Sequence[str] = STRATEGIES,
        judges: Sequence[str] = ("geval", "pairwise"),
        concurrency: int = 4,
        model: BaseChatModel | Mapping[str, BaseChatModel] | None = None,
        progress: Callable[[Row], None] | None = None,
    ) -> None:
        self.strategies = list(dict.fromkeys([DRAFT, *strategies]))
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"strategies: unknown {unknown}; use {', '.join(STRATEGIES)}")
        unknown = [j for j in judges if j not in JUDGES]
        if unknown:
            raise ValueError(f"judges: unknown {unknown}; use {', '.join(JUDGES)}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.cases = list(cases)
        self.config = config
        self.judge = judge
        self.results = results
        self.judges = list(judges)
        self.model = model
        self.progress = progress
        self.finished = {key: row for key, row in results.load().items() if row.ok}
        self._limit = asyncio.Semaphore(concurrency)

    def pending(self) -> int:
        return sum(
            (case.id, s) not in self.finished for case in self.cases for s in self.strategies
        )

    async def run(self) -> dict[Key, Row]:
        """Every case through every strategy; returns the rows of this dataset (old and new)."""
        self.refiners = {
            s: Refiner(self.config.model_copy(update={"strategy": s}), model=self.model)
            for s in self.strategies
        }
        try:
            # Warm-up is not a turn's latency: what every refiner shares loads before any case.
            await next(iter(self.refiners.values())).preload()
            await asyncio.gather(*(self.run_case(case) for case in self.cases))
        finally:
            for refiner in self.refiners.values():
                await refiner.aclose()
            self.results.close()
        wanted = {(case.id, s) for case in self.cases for s in self.strategies}
        return {key: row for key, row in self.results.load().items() if key in wanted}

    async def run_case(self, case: EvalCase) -> None:
        """The draft first, then the other strategies concurrently, each refining it."""
        draft = await self.run_row(case, DRAFT, {})
        if not draft.ok:
            return  # the others need the draft; they run when the case is retried
        rows = {DRAFT: draft}
        await asyncio.gather(*(self.run_row(case, s, rows) for s in self.strategies[1:]))

    async def run_row(self, case: EvalCase, strategy: str, rows: dict[str, Row]) -> Row:
        if (case.id, strategy) in self.finished:
            return self.finished[(case.id, strategy)]
        async with self._limit:
            row = await self.make_row(case, strategy, rows)
        self.results.append(row)
        if self.progress:
            self.progress(row)
        return row

    async def make_row(self, case: EvalCase, strategy: str, rows: dict[str, Row]) -> Row:
        request = case.request()
        if strategy != DRAFT:
            request["draft"] = rows[DRAFT].reply
        try:
            result = await self.refiners[strategy].arefine(request)
        except Exception as exc:
            error = f"refine: {type(exc).__name__}: {exc}"
            return Row(case_id=case.id, strategy=strategy, ok=False, error=error)
        row = Row(
            case_id=case.id,
            strategy=strategy,
            reply=result.reply,
            draft=result.draft,
            changed=result.changed,
            cost=cost(result.usage),
            latency_ms=result.timings.get("total", 0.0),
            degraded=[d.step for d in result.degraded or []],
            gate=result.gate.kept if result.gate else None,
        )
        tracker = UsageTracker()
        try:
            await tracked(tracker, lambda: self.judge_row(case, row, rows))
        except Exception as exc:
            row.ok, row.error = False, f"judge: {type(exc).__name__}: {exc}"
        row.judge_cost = cost(tracker.usage)
        return row

    async def judge_row(self, case: EvalCase, row: Row, rows: dict[str, Row]) -> None:
        """The requested judges on `row`'s reply, concurrently. A reply already judged for this
        case (e.g. a refinement that changed nothing) reuses its scores."""
        context = case.judge_context()
        method = self.config.structured_output
        same = next((r for r in rows.values() if r.reply == row.reply), None)

        async def geval() -> None:
            if same is not None and same.geval is not None:
                row.geval = same.geval
            else:
                row.geval = (
                    await judge_reply(self.judge, context, row.reply, method=method)
                ).model_dump()

        async def safety() -> None:
            if same is not None and same.safety is not None:
                row.safety = same.safety
            else:
                output = await judge_safety(self.judge, context, row.reply, method=method)
                row.safety = output.model_dump()

        async def pairwise() -> None:
            draft = rows[DRAFT].reply
            result = PairwiseResult(identical=draft == row.reply)
            if not result.identical:
                result.verdict = await compare(
                    self.judge,
                    context,
                    draft,
                    row.reply,
                    labels=(DRAFT, row.strategy),
                    method=method,
                )
            row.pairwise = result

        work = {"geval": geval, "safety": safety}
        if row.strategy != DRAFT:
            work["pairwise"] = pairwise
        try:
            async with asyncio.TaskGroup() as group:
                for name in self.judges:
                    if name in work:
                        group.create_task(work[name]())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
