"""Slow clients against `redraft serve` (issue 18, item 1): header and body read deadlines and
a cap on open connections, with real turns served alongside. Raw sockets play the slow
clients: one sends a header line every half second, another trickles its body."""

from __future__ import annotations

import socket
import threading
import time

import openai
import pytest

from redraft.testing import FakeProvider
from tests.conftest import user
from tests.servers import redraft_serve
from tests.test_server import serve_env

HEADER_S, BODY_S, MAX_CONNECTIONS = 2.0, 3.0, 40
SLACK_S = 2.0  # a loaded 2-core machine


@pytest.fixture(scope="module")
def upstream():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    env = serve_env(
        upstream,
        tmp / "home",
        REDRAFT_STRATEGY="none",
        REDRAFT_MEMORY="false",
        REDRAFT_HEADER_TIMEOUT_S=str(HEADER_S),
        REDRAFT_BODY_TIMEOUT_S=str(BODY_S),
        REDRAFT_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    )
    with redraft_serve(env, tmp / "serve.log") as url:
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


class SlowClient(threading.Thread):
    """Sends `head`, then `drip` every half second, until the server answers or closes;
    records how long that took and what the server said."""

    def __init__(self, url: str, head: bytes, drip: bytes, give_up_s: float = 60) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address(url))
        self.head, self.drip, self.give_up_s = head, drip, give_up_s
        self.answer = b""
        self.seconds: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        self.sock.settimeout(0.5)
        try:
            self.sock.sendall(self.head)
            while time.monotonic() - started < self.give_up_s:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    self.sock.sendall(self.drip)
                    continue
                self.answer += data
                if not data:
                    break
        except OSError:  # reset or broken pipe: closed by the server
            pass
        self.seconds = time.monotonic() - started
        self.sock.close()


def slow_headers(url: str) -> SlowClient:
    return SlowClient(url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", b"X-Slow: a\r\n")


def test_slow_header_clients_are_cut_while_real_turns_are_served(server, upstream):
    slow = [slow_headers(server) for _ in range(MAX_CONNECTIONS // 2)]
    for client in slow:
        client.start()
    openai_client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    replies = [
        openai_client.chat.completions.create(model="m", messages=[user(f"real {i}")])
        .choices[0]
        .message.content
        for i in range(5)
    ]
    assert replies == [f"Scripted reply to: real {i}" for i in range(5)]
    for client in slow:
        client.join(HEADER_S + 30)
    assert all(c.seconds is not None and c.seconds < HEADER_S + SLACK_S for c in slow), [
        c.seconds for c in slow
    ]
    assert all(c.answer.startswith(b"HTTP/1.1 408 ") for c in slow)
    assert b'"code": "request_timeout"' in slow[0].answer


def test_a_slow_body_is_cut(server):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    client = SlowClient(server, head, b" ")
    client.start()
    client.join(BODY_S + 30)
    assert client.seconds is not None and client.seconds < BODY_S + SLACK_S


def test_past_the_cap_slow_connections_make_room_for_real_turns(server):
    idle = [slow_headers(server) for _ in range(MAX_CONNECTIONS + 10)]
    for client in idle:
        client.start()
    time.sleep(0.5)  # every slow client is connected, the cap is full
    # a client that sends its request at once gets in: the longest-waiting slow one makes room
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    for i in range(3):
        assert client.chat.completions.create(model="m", messages=[user(f"in {i}")]).choices
    for slow in idle:
        slow.join(HEADER_S + 30)
    evicted = [c for c in idle if c.answer.startswith(b"HTTP/1.1 503 ")]
    # the 10 past the cap, and one for the real client (its three turns share a connection)
    assert len(evicted) >= 11 and all(c.seconds < HEADER_S for c in evicted)
    assert b"retry-after: 1" in evicted[0].answer
    assert all(c.seconds < HEADER_S + SLACK_S for c in idle)


def test_a_keep_alive_connection_that_trickles_its_next_request_is_cut(server):
    """The deadline starts again after each response: a client cannot hold a kept-alive
    connection by sending its next request slowly."""
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the second request's headers never end
    )
    client = SlowClient(server, request, b"X-Slow: a\r\n")
    client.start()
    client.join(HEADER_S + 30)
    assert client.answer.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in client.answer
    assert client.seconds < HEADER_S + SLACK_S
