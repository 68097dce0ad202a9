"""`/healthz` tells a load balancer whether this replica can serve turns: its thread storage."""

from __future__ import annotations

import httpx

from redraft import RefinerConfig
from redraft.server.app import create_app

DOWN = "postgresql://postgres@127.0.0.1:9/nothing"  # nothing listens on port 9


async def health(config: RefinerConfig) -> httpx.Response:
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        return await client.get("/healthz")


async def test_a_replica_whose_database_is_down_is_unavailable(tmp_path):
    config = RefinerConfig(checkpointer="postgres", database_url=DOWN, home=tmp_path)
    answer = await health(config)
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "thread storage" in answer.json()["reason"]


async def test_a_replica_on_a_live_database_is_up(database_url, tmp_path):
    config = RefinerConfig(checkpointer="postgres", database_url=database_url, home=tmp_path)
    answer = await health(config)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_local_threads_are_always_up(tmp_path):
    answer = await health(RefinerConfig(checkpointer="sqlite", home=tmp_path))
    assert answer.status_code == 200
