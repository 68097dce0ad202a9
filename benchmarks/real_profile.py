"""Where a real turn spends its time, per agent, from a run of the real-model tier.

    REDRAFT_TEST_REALMODEL_TIMINGS=/tmp/turns.jsonl pytest tests/realmodel --basetemp=/tmp/tier
    python -m benchmarks.real_profile /tmp/turns.jsonl /tmp/tier/realmodel0/server.log

The tier writes each clean turn's usage and node timings; llama-cpp-python's server logs, per
completion, its prompt-processing and generation time. The server's rates (tokens per second,
over the whole run) turn each agent's prompt and output tokens into the time it spent on each.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

PROMPT = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
GENERATION = re.compile(r"\beval time =\s*([\d.]+) ms /\s*(\d+) runs")


def server_rates(log: Path) -> tuple[float, float]:
    """Prompt and generation tokens per second over the server's whole log."""
    text = log.read_text(errors="replace")
    prompt = [(float(ms), int(n)) for ms, n in PROMPT.findall(text)]
    generated = [
        (float(ms), int(n))
        for line in text.splitlines()
        if "prompt eval" not in line
        for ms, n in GENERATION.findall(line)
    ]

    def rate(pairs: list[tuple[float, int]]) -> float:
        ms = sum(p[0] for p in pairs)
        return sum(p[1] for p in pairs) / (ms / 1000) if ms else float("nan")

    return rate(prompt), rate(generated)


def profile(turns: Path, log: Path) -> str:
    prompt_rate, generation_rate = server_rates(log)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count = 0
    for line in turns.read_text().splitlines():
        turn = json.loads(line)
        count += 1
        for agent, usage in turn["usage"]["by_agent"].items():
            for key in ("calls", "prompt_tokens", "completion_tokens"):
                totals[agent][key] += usage[key]
    rows = [
        "| agent | calls | prompt tokens | output tokens | prompt processing s | generation s |",
        "|---|---|---|---|---|---|",
    ]
    for agent, t in sorted(totals.items(), key=lambda kv: -kv[1]["prompt_tokens"]):
        rows.append(
            f"| {agent} | {t['calls'] / count:.1f} | {t['prompt_tokens'] / count:.0f} | "
            f"{t['completion_tokens'] / count:.0f} | "
            f"{t['prompt_tokens'] / count / prompt_rate:.1f} | "
            f"{t['completion_tokens'] / count / generation_rate:.1f} |"
        )
    return (
        f"{count} turns; per turn, mean. Server rates over the run: prompt "
        f"{prompt_rate:.0f} tokens/s, generation {generation_rate:.1f} tokens/s.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_profile", description=__doc__)
    parser.add_argument("turns", type=Path, help="the tier's REDRAFT_TEST_REALMODEL_TIMINGS file")
    parser.add_argument("log", type=Path, help="the model server's log")
    args = parser.parse_args(argv)
    print(profile(args.turns, args.log), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
