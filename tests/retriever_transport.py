"""The retriever app in-process for the generator's tests, and an httpx transport to it that records
every call, can refuse connections (`up = False`) and can hold calls back until `open` is set."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
from fastapi.testclient import TestClient

from retriever_service.app import create_app
from retriever_service.settings import RetrieverSettings

FACTS = [
    {"subject": "France", "relation": "capital", "object": "Paris"},
    {"subject": "Germany", "relation": "capital", "object": "Berlin"},
    {"subject": "France", "relation": "borders", "object": "Spain"},
]


def running_retriever(data_dir: Path, encoder, facts: list[dict], **settings) -> Iterator[TestClient]:
    """The retriever app (Qdrant in memory) with `facts` loaded, started; for a fixture to `yield from`."""
    app = create_app(RetrieverSettings(qdrant_url=":memory:", data_dir=data_dir, **settings), encoder=encoder)
    with TestClient(app) as client:
        if facts:
            assert client.post("/v1/facts", json={"facts": facts}).status_code == 200
        yield client


class Call(NamedTuple):
    path: str
    queries: list[str]  # of a search or a batch search; empty for other calls
    request_id: str | None


class RetrieverTransport(httpx.AsyncBaseTransport):
    def __init__(self, app, *, up: bool = True, held: bool = False) -> None:
        self.inner, self.up, self.calls = httpx.ASGITransport(app=app), up, []
        self.open = asyncio.Event()
        if not held:
            self.open.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        queries = body.get("queries", [body["query"]] if "query" in body else [])
        self.calls.append(Call(request.url.path, queries, request.headers.get("x-request-id")))
        await self.open.wait()
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)
