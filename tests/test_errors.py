"""shared/errors.py: the one table of how typed failures are answered, applied at the edge."""

import importlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from generator_service.batching import GenerationTimeout, QueueFull, ShuttingDown
from generator_service.retriever_client import (
    RetrieverAuthFailed,
    RetrieverMalformed,
    RetrieverRejected,
    RetrieverUnavailable,
)
from retriever_service.store import StoreError
from shared.errors import ERROR_STATUSES, FAILURES, Failure, failure_of, install_error_handlers
from shared.metrics import Metrics
from shared.middleware import ServiceMiddleware

RAISED = {  # each typed failure, and the status, code, Retry-After and message it is answered with
    "queue_full": (QueueFull("full"), 429, "queue_full", "1", "full"),
    "shutting_down": (ShuttingDown("closing"), 503, "shutting_down", "1", "closing"),
    "timeout": (GenerationTimeout("late"), 504, "generation_timeout", None, "late"),
    "retriever_down": (RetrieverUnavailable("down"), 503, "retriever_unavailable", "1", "down"),
    "malformed": (RetrieverMalformed("odd"), 503, "retriever_unavailable", "1", "odd"),  # as its base
    "auth": (RetrieverAuthFailed("key"), 502, "retriever_auth_failed", None, "key"),
    "rejected": (RetrieverRejected(422, "k_out_of_range", "retriever: k"), 422, "k_out_of_range", None, "retriever: k"),
    "busy": (
        RetrieverRejected(429, "too_many_requests", "retriever: busy", "7"),
        429,
        "too_many_requests",
        "7",
        "retriever: busy",
    ),
    "store": (StoreError("gone"), 503, "store_unavailable", "1", "the fact store is unavailable: gone"),
}


def test_every_entry_names_an_exception_class_and_a_documented_status():
    for name, entry in FAILURES.items():
        module, _, cls = name.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), cls), Exception), name
        if isinstance(entry, Failure):
            assert entry.status in ERROR_STATUSES, name
    assert failure_of(ValueError("not a typed failure")) is None


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, metrics=Metrics("test_errors"), max_body_bytes=1024)

    @app.get("/raise/{name}")
    def fail(name: str):
        if name == "unexpected":
            raise RuntimeError("a bug")
        raise RAISED[name][0]

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("name", RAISED)
def test_a_typed_failure_is_answered_as_the_table_says(client, name):
    _, status, code, retry_after, message = RAISED[name]
    r = client.get(f"/raise/{name}", headers={"X-Request-ID": f"req-{name}"})
    assert r.status_code == status and r.headers.get("retry-after") == retry_after
    assert r.json() == {"error": {"code": code, "message": message, "details": []}, "request_id": f"req-{name}"}
    assert r.headers["x-request-id"] == f"req-{name}"  # the outer middleware saw the answer


def test_anything_else_is_a_500_in_the_same_shape(client):
    r = client.get("/raise/unexpected")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
