"""The same facts and queries through each store backend give the same results (congruence)."""

import numpy as np
import pytest

from retriever_service.store import EdgeStore, FactFilter, StoreError, open_store
from shared.facts import Triple

DIM = 16


def facts(n=300, seed=0):
    rng = np.random.default_rng(seed)
    triples = [Triple(f"e{i % 40}", f"r{i % 7}", f"o{i}") for i in range(n)]
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return triples, vectors


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    url = ":memory:" if request.param == "memory" else None
    s = open_store(url=url, api_key=None, path=tmp_path, collection="facts", dim=DIM)
    yield s
    s.close()


def fill(store, triples, vectors):
    store.upsert([t.id for t in triples], vectors, [t.payload() for t in triples])


def test_congruence_across_backends(tmp_path):
    triples, vectors = facts()
    edge = open_store(url=None, api_key=None, path=tmp_path, collection="facts", dim=DIM)
    memory = open_store(url=":memory:", api_key=None, path=None, collection="facts", dim=DIM)
    for s in (edge, memory):
        fill(s, triples, vectors)
    edge.optimize()  # builds the HNSW index
    queries = np.random.default_rng(1).normal(size=(24, DIM)).astype(np.float32)
    filters = [
        None,
        FactFilter(("e3",)),
        FactFilter(("o17", "e5")),
        FactFilter(("nobody",)),
        FactFilter(("e3", "e5"), side="subject", relation="r3"),
        FactFilter(("o17", "o3"), side="object"),
        FactFilter(("e3", "o17"), relation="r3"),
        FactFilter(("e3",), side="object"),
    ] * 3
    got_edge = edge.search(queries[: len(filters)], 10, filters)
    got_memory = memory.search(queries[: len(filters)], 10, filters)
    for a, b, f in zip(got_edge, got_memory, filters, strict=True):
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
        if f:
            expected = [
                t
                for t in triples
                if (f.relation is None or t.relation == f.relation)
                and (
                    (f.side in (None, "subject") and t.subject in f.names)
                    or (f.side in (None, "object") and t.object in f.names)
                )
            ]
            assert {h.id for h in a} <= {t.id for t in expected} and len(a) == min(10, len(expected))
    assert got_edge[3] == [] == got_edge[7] and edge.count() == memory.count() == len(triples)
    assert sorted(h.payload["object"] for h in got_edge[4]) == ["o283", "o3", "o45"]  # i = 3 (mod 7), 3 or 5 (mod 40)
    edge.close()
    memory.close()


def test_upsert_is_idempotent_and_delete(store):
    triples, vectors = facts(50)
    fill(store, triples, vectors)
    fill(store, triples, vectors)
    assert store.count() == 50
    assert set(store.existing([triples[0].id, Triple("x", "y", "z").id])) == {triples[0].id}
    assert store.fetch([triples[1].id])[triples[1].id]["object"] == "o1"
    store.delete([triples[0].id, triples[1].id])
    assert store.count() == 48
    assert {p["object"] for p in store.payloads()} == {f"o{i}" for i in range(2, 50)}


def test_edge_store_reopens_with_its_data(tmp_path):
    triples, vectors = facts(100)
    s = EdgeStore(tmp_path / "facts", DIM)
    fill(s, triples, vectors)
    s.close()
    again = EdgeStore(tmp_path / "facts", DIM)
    assert again.count() == 100
    assert again.search(vectors[:1], 1, [None])[0][0].id == triples[0].id
    assert sorted(again.info()["payload_indexes"]) == ["object", "relation", "subject"]
    again.close()


def test_unreachable_server_is_a_store_error():
    with pytest.raises(StoreError):
        open_store(url="http://127.0.0.1:9", api_key=None, path=None, collection="facts", dim=DIM)
