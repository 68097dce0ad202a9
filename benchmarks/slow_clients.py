"""Slow clients against `redraft serve` at `ulimit -n 1024` (issue 18, item 1): 1,100
connections each sending a header line every 5 s, and 44 real turns alongside.

Before the read deadlines and the connection cap, this made 44 of 44 turns fail (33 read
errors, 11 × 502: no file descriptors left for the upstream). Writes
`benchmarks/results/reliability-slow-clients.json`. Run: `python -m benchmarks.slow_clients`.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from redraft.testing import FakeProvider
from tests.servers import REPO, first_line, running, server_env, wait_until_up

SLOW, TURNS, DRIP_S, ULIMIT = 1_100, 44, 5.0, 1024
RESULT = REPO / "benchmarks" / "results" / "reliability-slow-clients.json"


def slow_client(host: str, port: int, stop: threading.Event, held: list[float]) -> None:
    """Connect, send a header line every DRIP_S until the server closes; record how long."""
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError:
        held.append(-1.0)
        return
    sock.settimeout(DRIP_S)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            try:
                if not sock.recv(65536):
                    break
                continue  # an answer (408 / 503); the close follows
            except TimeoutError:
                sock.sendall(b"X-Slow: a\r\n")
    except OSError:
        pass
    held.append(time.monotonic() - started)
    sock.close()


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # this side needs 1,100
    with FakeProvider() as upstream, tempfile.TemporaryDirectory() as tmp:
        env = server_env(
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="k",
            REDRAFT_HOME=f"{tmp}/home",
            REDRAFT_STRATEGY="none",
            REDRAFT_MEMORY="false",
            REDRAFT_PRELOAD="false",
        )
        serve = f"ulimit -n {ULIMIT} && exec {sys.executable} -m redraft.cli serve --port 0"
        log = Path(tmp) / "serve.log"
        with running(["bash", "-c", serve], env, log, pipe_stdout=True, cwd=REPO) as process:
            url = first_line(process, log).split()[-1]
            wait_until_up(f"{url}/healthz", process, log)
            host, port = url.removeprefix("http://").split(":")
            stop, held = threading.Event(), []
            threads = [
                threading.Thread(target=slow_client, args=(host, int(port), stop, held))
                for _ in range(SLOW)
            ]
            for thread in threads:
                thread.start()
            time.sleep(2)
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)

            def turn(i: int) -> str:
                try:
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"t{i}"}]
                    )
                    return "ok"
                except openai.APIStatusError as exc:
                    return str(exc.status_code)
                except openai.APIError as exc:
                    return type(exc).__name__

            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                outcomes = list(pool.map(turn, range(TURNS)))
            turns_s = time.monotonic() - started
            time.sleep(15)  # past the header deadline: how long the slow ones were held
            stop.set()
            for thread in threads:
                thread.join(30)
            server_log = log.read_text(errors="replace")
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    cut = sorted(h for h in held if h >= 0)
    result = {
        "slow_connections": SLOW,
        "server_ulimit_n": ULIMIT,
        "turns": TURNS,
        "turn_outcomes": counts,
        "turns_seconds": round(turns_s, 1),
        "slow_held_s": {
            "p50": round(cut[len(cut) // 2], 1),
            "max": round(cut[-1], 1),
            "could_not_connect": sum(h < 0 for h in held),
        },
        "server_errors_logged": server_log.count("Too many open files"),
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
