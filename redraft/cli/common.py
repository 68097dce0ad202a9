"""What every command shares: exit codes, one-line failures and warnings, reading JSON input."""

from __future__ import annotations

import sys
from pathlib import Path

from redraft.parsing import parse_json, printable

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int) -> int:
    """One line on stderr, whatever the message holds (a YAML error spans several)."""
    print("redraft: " + " ".join(message.split()), file=sys.stderr)
    return code


def read_json(source: str) -> object:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return parse_json(text)


def warn(message: str) -> None:
    print(f"redraft: warning: {message}", file=sys.stderr)


def shown(path: str) -> str:
    """A path relative to the working directory when it is below it, escaped: a file name
    can hold terminal escape codes and newlines."""
    try:
        return printable(str(Path(path).relative_to(Path.cwd())))
    except ValueError:
        return printable(path)
