"""Where facts live: Qdrant, three ways behind one interface.

- `EdgeStore`: Qdrant Edge (the Qdrant engine in-process) in a data directory; the default.
- `ServerStore`: qdrant-client against a Qdrant server (`url`), or its `:memory:` local mode.

Callers see `FactStore`, `StoredHit` and `StoreError` only: no qdrant type leaks out of here.
Points are fact ids (UUID strings) with a unit vector and the payload
{subject, relation, object, text} (and an end's kind when it is not an entity, `shared.facts`);
subject, object and relation carry keyword indexes. A search is filtered by a `FactFilter`: facts
touching some names (as subject or object, or on one side only) and, optionally, of one relation:
one hop of a path search is one such filter per chain step, all of a hop's in one batch call.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

ENTITY_FIELDS = ("subject", "object")
INDEXED_FIELDS = (*ENTITY_FIELDS, "relation")
NAME_FIELDS = [*INDEXED_FIELDS, "subject_kind", "object_kind"]  # what payloads() reads: the entity index's input
SCROLL_PAGE = 2048


class StoreError(RuntimeError):
    """The store failed or cannot be reached; the service answers 503."""


@dataclass(frozen=True, slots=True)
class FactFilter:
    """Facts with one of `names` as subject or object (`side` None), or on one side only; of `relation` when set."""

    names: tuple[str, ...]
    side: str | None = None  # "subject", "object" or None for either
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.side not in (None, *ENTITY_FIELDS):
            raise ValueError(f"side is 'subject', 'object' or None, not {self.side!r}")

    @classmethod
    def touching(cls, names: Sequence[str] | None) -> FactFilter | None:
        """Facts touching any of the names; None (no filter) for none."""
        return cls(tuple(names)) if names else None


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: str
    score: float
    payload: dict


class FactStore(Protocol):
    backend: str

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def fetch(self, ids: Sequence[str]) -> dict[str, dict]: ...
    def search(self, vectors: np.ndarray, k: int, filters: Sequence[FactFilter | None]) -> list[list[StoredHit]]: ...
    def existing(self, ids: Sequence[str]) -> list[str]: ...
    def payloads(self) -> Iterator[dict]: ...
    def count(self) -> int: ...
    def optimize(self) -> None: ...
    def info(self) -> dict: ...
    def close(self) -> None: ...


def open_store(
    *,
    url: str | None,
    api_key: str | None,
    path: Path | None,
    collection: str,
    dim: int,
    shards: int = 1,
    replicas: int = 1,
) -> FactStore:
    """A server store when `url` is set (':memory:' for qdrant-client's local mode), else Qdrant Edge at
    `path`. `shards` and `replicas` shape a new collection on a Qdrant cluster."""
    if url:
        return ServerStore(url=url, api_key=api_key, collection=collection, dim=dim, shards=shards, replicas=replicas)
    if path is None:
        raise StoreError("set a data directory for the embedded store, or a Qdrant URL")
    return EdgeStore(path=path / collection, dim=dim)


class EdgeStore:
    backend = "qdrant-edge"

    def __init__(self, path: Path, dim: int) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.path = Path(path)
        self._write_lock = threading.Lock()
        try:
            if (self.path / "edge_config.json").exists():
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                self._shard = self._create(dim)
            self._index_fields()
        except Exception as exc:  # the Rust bindings raise plain Exceptions
            raise StoreError(f"cannot open the Qdrant Edge store at {self.path}: {exc}") from exc

    def _create(self, dim: int):
        qe = self._qe
        self.path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=128, full_scan_threshold=10_000),
        )
        shard = qe.EdgeShard.create(str(self.path), config)
        return shard

    def _index_fields(self) -> None:
        """Keyword indexes on subject, object and relation; a store made before the relation index gets it here."""
        present = set(self._shard.info().payload_schema)
        for field in INDEXED_FIELDS:
            if field not in present:
                self._shard.update(
                    self._qe.UpdateOperation.create_field_index(field, self._qe.PayloadSchemaType.Keyword)
                )

    def _filter(self, fact_filter: FactFilter | None):
        return None if fact_filter is None else _build_filter(self._qe, fact_filter)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [
            self._qe.Point(pid, vec, payload) for pid, vec, payload in zip(ids, vectors.tolist(), payloads, strict=True)
        ]
        with self._write_lock:
            self._call(self._shard.update, self._qe.UpdateOperation.upsert_points(points))

    def delete(self, ids: Sequence[str]) -> None:
        with self._write_lock:
            self._call(self._shard.update, self._qe.UpdateOperation.delete_points(list(ids)))

    def existing(self, ids: Sequence[str]) -> list[str]:
        records = self._call(self._shard.retrieve, list(ids), False, False)
        return [str(r.id) for r in records]

    def fetch(self, ids: Sequence[str]) -> dict[str, dict]:
        records = self._call(self._shard.retrieve, list(ids), True, False)
        return {str(r.id): dict(r.payload) for r in records}

    def search(self, vectors: np.ndarray, k: int, filters: Sequence[FactFilter | None]) -> list[list[StoredHit]]:
        qe = self._qe
        requests = [
            qe.QueryRequest(limit=k, query=qe.Query.Nearest(vec), with_payload=True, filter=self._filter(f))
            for vec, f in zip(vectors.tolist(), filters, strict=True)
        ]
        batches = self._call(self._shard.query_batch, qe.QueryBatchRequest(requests))
        return [[StoredHit(str(p.id), float(p.score), dict(p.payload)) for p in points] for points in batches]

    def payloads(self) -> Iterator[dict]:
        offset = None
        while True:
            request = self._qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=NAME_FIELDS)
            records, offset = self._call(self._shard.scroll, request)
            yield from (dict(r.payload) for r in records)
            if offset is None:
                return

    def count(self) -> int:
        return int(self._call(self._shard.count, self._qe.CountRequest(exact=True)))

    def optimize(self) -> None:
        with self._write_lock:
            self._call(self._shard.optimize)
            self._call(self._shard.flush)

    def info(self) -> dict:
        info = self._call(self._shard.info)
        return {
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "segments": info.segments_count,
            "payload_indexes": sorted(info.payload_schema),
            "path": str(self.path),
        }

    def close(self) -> None:
        with self._write_lock:
            self._shard.flush()
            self._shard.close()

    @staticmethod
    def _call(fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # the Rust bindings raise plain Exceptions
            raise StoreError(f"Qdrant Edge: {exc}") from exc


class ServerStore:
    """qdrant-client: a Qdrant server or cluster at `url`, or ':memory:' for the local mode."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        collection: str,
        dim: int,
        timeout_s: float = 10.0,
        shards: int = 1,
        replicas: int = 1,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self._m = models
        self.collection = collection
        self.backend = "qdrant-memory" if url == ":memory:" else "qdrant-server"
        try:
            if url == ":memory:":
                self._client = QdrantClient(location=":memory:")
            else:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s))
            if not self._client.collection_exists(collection):
                self._create(dim, shards, replicas)
            self._index_fields()
        except Exception as exc:  # connection refused, timeouts, HTTP errors from the server
            raise StoreError(f"cannot open collection {collection!r} at {url}: {exc}") from exc

    def _create(self, dim: int, shards: int, replicas: int) -> None:
        m = self._m
        self._client.create_collection(
            self.collection,
            vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
            shard_number=shards,
            replication_factor=replicas,
            hnsw_config=m.HnswConfigDiff(m=16, ef_construct=128, full_scan_threshold=10_000),
        )

    def _index_fields(self) -> None:
        """Keyword indexes on subject, object and relation (a server collection made before the relation index
        gets it here); the local mode has no payload indexes and warns, so it is left alone."""
        if self.backend != "qdrant-server":
            return
        present = set(self._client.get_collection(self.collection).payload_schema or {})
        for field in INDEXED_FIELDS:
            if field not in present:
                self._client.create_payload_index(self.collection, field, self._m.PayloadSchemaType.KEYWORD)

    def _filter(self, fact_filter: FactFilter | None):
        return None if fact_filter is None else _build_filter(self._m, fact_filter)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # qdrant-client raises transport, HTTP and gRPC errors
            raise StoreError(f"Qdrant ({self.backend}): {exc}") from exc

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [
            self._m.PointStruct(id=pid, vector=vec, payload=payload)
            for pid, vec, payload in zip(ids, vectors.tolist(), payloads, strict=True)
        ]
        self._call(self._client.upsert, self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        selector = self._m.PointIdsList(points=list(ids))
        self._call(self._client.delete, self.collection, points_selector=selector, wait=True)

    def existing(self, ids: Sequence[str]) -> list[str]:
        return list(self.fetch(ids, with_payload=False))

    def fetch(self, ids: Sequence[str], with_payload: bool = True) -> dict[str, dict]:
        records = self._call(self._client.retrieve, self.collection, ids=list(ids), with_payload=with_payload)
        return {str(uuid.UUID(str(r.id))): dict(r.payload or {}) for r in records}

    def search(self, vectors: np.ndarray, k: int, filters: Sequence[FactFilter | None]) -> list[list[StoredHit]]:
        m = self._m
        requests = [
            m.QueryRequest(query=vec, limit=k, filter=self._filter(f), with_payload=True)
            for vec, f in zip(vectors.tolist(), filters, strict=True)
        ]
        responses = self._call(self._client.query_batch_points, self.collection, requests=requests)
        return [[StoredHit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]

    def payloads(self) -> Iterator[dict]:
        offset = None
        while True:
            records, offset = self._call(
                self._client.scroll,
                self.collection,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=NAME_FIELDS,
                with_vectors=False,
            )
            yield from (dict(r.payload or {}) for r in records)
            if offset is None:
                return

    def count(self) -> int:
        return int(self._call(self._client.count, self.collection, exact=True).count)

    def optimize(self) -> None:
        """The server indexes in the background; nothing to do."""

    def info(self) -> dict:
        info = self._call(self._client.get_collection, self.collection)
        return {
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "segments": info.segments_count,
            "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "payload_indexes": sorted(info.payload_schema or {}),
        }

    def close(self) -> None:
        self._client.close()


def _build_filter(api, fact_filter: FactFilter):
    """The Qdrant filter of a FactFilter; `api` is qdrant_edge or qdrant_client.models, whose filter classes
    share their names and fields."""
    names = api.MatchAny(any=list(fact_filter.names))
    sides = ENTITY_FIELDS if fact_filter.side is None else (fact_filter.side,)
    touching = [api.FieldCondition(key=side, match=names) for side in sides]
    if fact_filter.relation is None:
        return api.Filter(should=touching)
    relation = api.FieldCondition(key="relation", match=api.MatchValue(value=fact_filter.relation))
    return api.Filter(must=[relation, *touching] if len(touching) == 1 else [relation, api.Filter(should=touching)])
