"""The retriever through its real FastAPI app, with the real MiniLM weights and each store backend."""

import math

import pytest
from fastapi.testclient import TestClient

from retriever_service.app import create_app
from retriever_service.demo_kg import demo_triples
from retriever_service.settings import RetrieverSettings

DEMO_SUBJECTS = {"France", "Germany", "Spain", "Italy", "Japan"}


@pytest.fixture(scope="module")
def demo_facts():
    return [
        {"subject": t.subject, "relation": t.relation, "object": t.object}
        for t in demo_triples()
        if t.subject in DEMO_SUBJECTS
    ]


@pytest.fixture(params=["edge", "memory"])
def client(request, tmp_path, encoder, demo_facts):
    url = ":memory:" if request.param == "memory" else None
    settings = RetrieverSettings(data_dir=tmp_path, qdrant_url=url, max_body_bytes=200_000, tau=0.05)
    with TestClient(create_app(settings, encoder=encoder)) as c:
        r = c.post("/v1/facts", json={"facts": demo_facts})
        assert r.status_code == 200, r.text
        yield c


def test_capital_of_france(client):
    r = client.post("/v1/search", json={"query": "What is the capital of France?", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["facts"][0]["text"] == "France capital Paris"
    assert body["linked"][0]["names"] == ["France"]
    assert all(f["subject"] == "France" or f["object"] == "France" for f in body["facts"])
    assert math.isclose(sum(f["prior"] for f in body["facts"]), 1.0, rel_tol=1e-6)
    assert body["facts"][0]["prior"] == max(f["prior"] for f in body["facts"])


def test_dense_fallback_and_batch(client):
    r = client.post("/v1/search/batch", json={"queries": ["capital of Japan", "how many people live there"], "k": 3})
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert first["facts"][0]["text"] == "Japan capital Tokyo"
    assert second["linked"] == [] and len(second["facts"]) == 3  # no entity named: plain dense search
    assert all(f["relation"] == "population" for f in second["facts"])


def test_ingest_is_idempotent_and_delete(client, demo_facts):
    before = client.get("/v1/stats").json()["facts"]
    r = client.post("/v1/facts", json={"facts": demo_facts[:10]})
    assert r.json() == {"received": 10, "added": 0, "existing": 10, "count": before}
    fact = {"subject": "France", "relation": "capital", "object": "Paris"}
    r = client.request("DELETE", "/v1/facts", json={"triples": [fact]})
    assert r.json() == {"deleted": 1, "count": before - 1}
    top = client.post("/v1/search", json={"query": "What is the capital of France?"}).json()["facts"][0]
    assert top["text"] != "France capital Paris"
    r = client.request("DELETE", "/v1/facts", json={"ids": [top["id"]]})
    assert r.json()["deleted"] == 1


def test_stats_health_ready_metrics(client):
    stats = client.get("/v1/stats").json()
    assert stats["facts"] > 100 and stats["encoder"]["dim"] == 384 and stats["entities"] > 50
    assert stats["backend"] in ("qdrant-edge", "qdrant-memory")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/v1/search", json={"query": "capital of Spain"})
    text = client.get("/metrics").text
    assert 'retriever_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert "retriever_search_duration_seconds_count 1.0" in text
    assert "retriever_embed_duration_seconds_count 1.0" in text


@pytest.mark.parametrize(
    "body, code",
    [
        ({"query": "", "k": 3}, "invalid_request"),
        ({"query": "   ", "k": 3}, "empty_query"),
        ({"query": "x" * 1001}, "query_too_long"),
        ({"query": "capital of France", "k": 0}, "invalid_request"),
        ({"query": "capital of France", "k": 101}, "k_out_of_range"),
        ({"k": 3}, "invalid_request"),
    ],
)
def test_bad_search_input_is_a_422_json_error(client, body, code):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_bad_facts_are_rejected_and_nothing_is_lost(client):
    before = client.get("/v1/stats").json()["facts"]
    bad = {
        "facts": [{"subject": "A", "relation": "r", "object": "B"}, {"subject": " ", "relation": "r", "object": "C"}]
    }
    r = client.post("/v1/facts", json=bad)
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_fact"
    assert client.post("/v1/facts", json={"facts": [{"subject": "A"}]}).status_code == 422
    assert client.request("DELETE", "/v1/facts", json={"ids": ["not-a-uuid"]}).json()["error"]["code"] == "malformed_id"
    big = {"facts": [{"subject": "x" * 1000, "relation": "r", "object": "y" * 1000}] * 120}
    r = client.post("/v1/facts", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert client.get("/v1/stats").json()["facts"] == before


def test_request_id_is_kept(client):
    r = client.post("/v1/search", json={"query": "capital of Italy"}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


def test_store_down_gives_503_not_500(tmp_path, encoder):
    settings = RetrieverSettings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:9")
    with TestClient(create_app(settings, encoder=encoder)) as c:
        r = c.post("/v1/search", json={"query": "capital of France"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert r.headers["retry-after"] == "1"
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200


def test_single_query_path_gives_the_batch_vector(encoder):
    texts = ["What is the capital of France?", "a", "who directed forrest gump and which year was it released"]
    together = encoder.encode(texts)
    for text, row in zip(texts, together, strict=True):
        alone = encoder.encode([text])[0]
        assert float(alone @ row) > 0.9999
