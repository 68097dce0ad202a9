"""A bad `REDRAFT_*` variable is one line from the command that reads it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REQUEST = '{"messages": [{"role": "user", "content": "hi"}], "draft": "Hello!"}'


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "redraft", *args],
        input=REQUEST,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_and_help_survive_a_bad_variable():
    done = subprocess.run(
        [sys.executable, "-c", "import redraft, redraft.cli; print('imported')"],
        env={**os.environ, "REDRAFT_STRATEGY": "bogus"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert run("--help", REDRAFT_STRATEGY="bogus").returncode == 0


@pytest.mark.parametrize("command", [["refine"], ["serve", "--port", "0"]])
def test_the_command_names_the_variable_and_exits_2(command):
    done = run(*command, REDRAFT_STRATEGY="bogus")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "invalid configuration" in line and "strategy" in line
