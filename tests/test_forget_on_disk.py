"""`redraft persona forget` while `redraft serve` runs: afterwards no file under REDRAFT_HOME
holds the forgotten words — not the databases, not their WAL files (issue 18, item 6)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from redraft.testing import FakeProvider
from tests.conftest import user
from tests.servers import redraft_serve
from tests.test_memory import learns
from tests.test_server import serve_env

ANA_SAYS = "Zanzibarquux"  # in ana's messages, so in her thread
ANA_FACT = "Quuxlemur"  # in the fact learned about ana, so in the persona store
BOB_SAYS = "Borkelwomp"  # bob's: must survive


def files_holding(home: Path, word: str) -> list[str]:
    needle = word.encode()
    return sorted(
        str(path.relative_to(home))
        for path in home.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    )


def wait_until(condition, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def upstream():
    with FakeProvider() as fake:
        yield fake


def test_forget_with_the_server_running_leaves_no_trace_on_disk(upstream, tmp_path):
    home = tmp_path / "home"

    def learned(call) -> dict:
        if BOB_SAYS in str(call.messages):
            return learns("The user likes trains.")
        return learns(f"The user has a pet lemur called {ANA_FACT}.")

    upstream.set_default("memory", learned)
    env = serve_env(upstream, home, REDRAFT_STRATEGY="none")
    with redraft_serve(env, tmp_path / "serve.log") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for text in (f"My secret word is {ANA_SAYS}.", f"Say {ANA_SAYS} again."):
            client.chat.completions.create(
                model="m", messages=[user(text)], user="ana", extra_body={"thread_id": "t1"}
            )
        client.chat.completions.create(
            model="m",
            messages=[user(f"Mine is {BOB_SAYS}.")],
            user="bob",
            extra_body={"thread_id": "t1"},
        )
        # the background learning has written ana's fact
        wait_until(lambda: files_holding(home, ANA_FACT))
        assert files_holding(home, ANA_SAYS) and files_holding(home, BOB_SAYS)

        done = subprocess.run(
            [sys.executable, "-m", "redraft", "persona", "forget", "ana"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "forgot user 'ana'" in done.stdout

        # the server is still running, its connections still open
        assert files_holding(home, ANA_SAYS) == []
        assert files_holding(home, ANA_FACT) == []
        assert files_holding(home, BOB_SAYS)  # the scan does see text: bob's is still there
        reply = client.chat.completions.create(
            model="m", messages=[user("still there?")], user="bob", extra_body={"thread_id": "t1"}
        )
        assert reply.choices[0].message.content
