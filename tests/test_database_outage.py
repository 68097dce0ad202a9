"""A PostgreSQL outage under `redraft serve` (issue 18, item 8): while the database does not
answer, new turns fail fast (a handed-in draft still comes back), and health checks answer
within a second. The outage is a TCP proxy in front of the real PostgreSQL that stops
forwarding: connections stay open and silent, as in a network partition or a hung server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
import pytest

from redraft.testing import FakeProvider
from tests.conftest import user
from tests.servers import redraft_serve
from tests.test_server import serve_env

FAST_S = 5.0  # "fails fast": thread_timeout_s (3 s) and a loaded machine's slack


class FreezingProxy:
    """Forwards TCP to `target` until `freeze()`; then nothing more passes either way and new
    connections are accepted and left silent."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.port: int | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _client(self, reader, writer) -> None:
        if self.frozen.is_set():
            await asyncio.sleep(3600)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # silent for good, the connection open
                writer.write(data)
                await writer.drain()
        writer.close()

    def freeze(self) -> None:
        self.frozen.set()

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def proxied_url(database_url):
    parts = urlsplit(database_url)
    proxy = FreezingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@" if parts.username else ""
    netloc = netloc.replace("@", f":{parts.password}@") if parts.password else netloc
    yield proxy, urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{proxy.port}"))
    proxy.stop()


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


def test_new_turns_fail_fast_and_health_checks_answer_in_a_second(proxied_url, tmp_path):
    proxy, url = proxied_url
    with FakeProvider() as upstream:
        env = serve_env(
            upstream, tmp_path / "home", REDRAFT_DATABASE_URL=url, REDRAFT_STRATEGY="none"
        )
        with redraft_serve(env, tmp_path / "serve.log") as server:
            client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
            thread = {"thread_id": f"outage-{time.time_ns()}"}
            first = client.chat.completions.create(
                model="m", messages=[user("before")], user="ana", extra_body=thread
            )
            assert first.choices[0].message.content
            assert httpx.get(f"{server}/healthz").status_code == 200

            proxy.freeze()

            health, seconds = timed(lambda: httpx.get(f"{server}/healthz", timeout=30))
            assert seconds < 1.5 and health.status_code == 503, (seconds, health)

            with_draft, seconds = timed(
                lambda: client.with_options(timeout=60).chat.completions.create(
                    model="m",
                    messages=[user("during")],
                    user="ana",
                    extra_body={**thread, "draft": "The draft reply."},
                )
            )
            assert seconds < FAST_S, seconds
            assert with_draft.choices[0].message.content == "The draft reply."
            steps = [d["step"] for d in with_draft.model_extra["redraft"]["degraded"]]
            assert "threads" in steps

            without, seconds = timed(
                lambda: client.with_options(timeout=60).chat.completions.create(
                    model="m", messages=[user("during")], user="ana", extra_body=thread
                )
            )
            assert seconds < FAST_S, seconds
            assert isinstance(without, openai.APIStatusError) and without.status_code == 502
            assert "the thread could not be read" in without.message

            health, seconds = timed(lambda: httpx.get(f"{server}/healthz", timeout=30))
            assert seconds < 1.5 and health.status_code == 503
