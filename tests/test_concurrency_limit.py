"""ConcurrencyLimitMiddleware: at most `max_in_flight` requests at a time, 429 with Retry-After
beyond, health and metrics never refused; both app factories install it from their settings; a
retriever's 429 reaches the generator's client with its Retry-After."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from generator_service.app import create_app as create_generator_app
from generator_service.retriever_client import RetrieverClient, RetrieverRejected
from generator_service.settings import GeneratorSettings
from retriever_service.app import create_app as create_retriever_app
from retriever_service.settings import RetrieverSettings
from shared.errors import failure_of, install_error_handlers
from shared.metrics import Metrics
from shared.middleware import ConcurrencyLimitMiddleware, ServiceMiddleware
from shared.retriever_api import PathOptions


def _app(release: asyncio.Event) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/slow")
    async def slow() -> dict:
        await release.wait()
        return {"done": True}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    app.add_middleware(ConcurrencyLimitMiddleware, max_in_flight=2)
    app.add_middleware(ServiceMiddleware, metrics=Metrics("limit"), max_body_bytes=1024)
    return app


async def _overload() -> tuple[list[int], httpx.Response, int, int]:
    release = asyncio.Event()
    transport = httpx.ASGITransport(app=_app(release))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await asyncio.sleep(0.05)  # both are in the endpoint now
        refused = await client.get("/slow", headers={"X-Request-ID": "over"})
        health = (await client.get("/healthz")).status_code
        release.set()
        done = [r.status_code for r in await asyncio.gather(*held)]
        after = (await client.get("/slow")).status_code
    return done, refused, health, after


def test_refuses_beyond_the_limit_then_recovers():
    done, refused, health, after = asyncio.run(_overload())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": {"code": "too_many_requests", "message": refused.json()["error"]["message"], "details": []},
        "request_id": "over",
    }
    assert refused.headers["x-request-id"] == "over"
    assert health == 200 and done == [200, 200] and after == 200


@pytest.mark.parametrize(
    "app",
    [
        lambda: create_retriever_app(RetrieverSettings(qdrant_url=":memory:", max_in_flight=3)),
        lambda: create_generator_app(GeneratorSettings(max_in_flight=3)),
    ],
    ids=["retriever", "generator"],
)
def test_both_services_install_it_from_their_settings(app):
    [limit] = [m for m in app().user_middleware if m.cls is ConcurrencyLimitMiddleware]
    assert limit.kwargs == {"max_in_flight": 3}


def test_a_retriever_429_is_passed_on_with_retry_after():
    body = {"error": {"code": "too_many_requests", "message": "busy", "details": []}, "request_id": None}
    busy = httpx.MockTransport(lambda request: httpx.Response(429, json=body, headers={"Retry-After": "1"}))
    client = RetrieverClient(GeneratorSettings(), Metrics("client").histogram("calls", "calls"), transport=busy)
    with pytest.raises(RetrieverRejected) as refused:
        asyncio.run(client.paths("What is the capital of France?", PathOptions(k=3), None))
    answer = failure_of(refused.value)
    assert (answer.status, answer.code, answer.headers) == (429, "too_many_requests", {"Retry-After": "1"})
