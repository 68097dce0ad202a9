"""Servers under test as subprocesses on 127.0.0.1: bounded lifetime, killed in teardown.

Each runs under coreutils `timeout`, in its own session, so it dies even if pytest does not get
to its teardown; teardown ends it by its process group id.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

LIFETIME_S = 600
STARTUP_S = 90
REPO = Path(__file__).resolve().parent.parent


def server_env(**values: str) -> dict[str, str]:
    """The test process's environment without the developer's redraft, OpenAI or LangSmith
    settings, plus `values`."""
    prefixes = ("REDRAFT_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(values)
    return env


def free_port() -> int:
    """For servers that cannot report the port they took (`langgraph dev`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(
    args: list[str],
    env: Mapping[str, str],
    log: Path,
    *,
    pipe_stdout: bool,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Run `args` (stderr, and stdout unless piped, to `log`); end it, group and all, on exit."""
    with log.open("w") as output:
        process = subprocess.Popen(
            ["timeout", "--kill-after=5", str(LIFETIME_S), *args],
            stdout=subprocess.PIPE if pipe_stdout else output,
            stderr=output,
            env=dict(env),
            cwd=cwd,
            text=True,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _end(process)


def _end(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
    if process.stdout:
        process.stdout.close()


def first_line(process: subprocess.Popen, log: Path) -> str:
    """The process's first line on stdout, or a failure showing its log. The rest of stdout
    keeps being read (into the log), so a full pipe never blocks the server."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        lines.put(process.stdout.readline())
        with log.open("a") as output, contextlib.suppress(ValueError):  # closed at teardown
            for line in process.stdout:
                output.write(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_S)
    except queue.Empty:
        line = ""
    if not line:
        raise RuntimeError(f"server did not start; its log:\n{tail(log)}")
    return line.strip()


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} is not up; its log:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def redraft_serve(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """`redraft serve --port 0`; yields its base URL once /healthz answers."""
    args = [sys.executable, "-m", "redraft", "serve", "--host", "127.0.0.1", "--port", "0"]
    with running(args, env, log, pipe_stdout=True) as process:
        url = first_line(process, log).split()[-1]
        wait_until_up(f"{url}/healthz", process, log)
        yield url


@contextlib.contextmanager
def langgraph_dev(env: Mapping[str, str], log: Path, workdir: Path) -> Iterator[str]:
    """`langgraph dev` serving the repository's langgraph.json, offline; yields its URL.

    It runs in `workdir`, since it keeps its state under `./.langgraph_api` and reads graph
    paths relative to the working directory: the config is copied there with absolute paths.
    """
    config = json.loads((REPO / "langgraph.json").read_text())
    config["dependencies"] = [str(REPO / d) for d in config["dependencies"]]
    config["graphs"] = {name: str(REPO / spec) for name, spec in config["graphs"].items()}
    (workdir / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "langgraph_cli",
        "dev",
        "--config",
        str(workdir / "langgraph.json"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
    ]
    offline = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    with running(args, {**env, **offline}, log, pipe_stdout=False, cwd=workdir) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/ok", process, log)
        yield url
