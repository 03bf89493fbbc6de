"""Where facts live: Qdrant, three ways behind one interface.

- `EdgeStore`: Qdrant Edge (the Qdrant engine in-process) in a data directory; the default.
- `ServerStore`: qdrant-client against a Qdrant server (`url`), or its `:memory:` local mode.

Callers see `FactStore`, `StoredHit` and `StoreError` only: no qdrant type leaks out of here.
Points are fact ids (UUID strings) with a unit vector and the payload
{subject, relation, object, text}; subject and object carry keyword indexes, and an entity
filter is "subject is one of these names, or object is".
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
SCROLL_PAGE = 2048


class StoreError(RuntimeError):
    """The store failed or cannot be reached; the service answers 503."""


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
    def search(self, vectors: np.ndarray, k: int, entities: Sequence[Sequence[str] | None]) -> list[list[StoredHit]]: ...
    def existing(self, ids: Sequence[str]) -> list[str]: ...
    def payloads(self) -> Iterator[dict]: ...
    def count(self) -> int: ...
    def optimize(self) -> None: ...
    def info(self) -> dict: ...
    def close(self) -> None: ...


def open_store(*, url: str | None, api_key: str | None, path: Path | None, collection: str, dim: int,
               shards: int = 1, replicas: int = 1) -> FactStore:
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
        for field in ENTITY_FIELDS:
            shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
        return shard

    def _entity_filter(self, names: Sequence[str] | None):
        if not names:
            return None
        qe = self._qe
        return qe.Filter(should=[qe.FieldCondition(key=f, match=qe.MatchAny(any=list(names))) for f in ENTITY_FIELDS])

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [self._qe.Point(pid, vec, payload) for pid, vec, payload in zip(ids, vectors.tolist(), payloads)]
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

    def search(self, vectors: np.ndarray, k: int, entities: Sequence[Sequence[str] | None]) -> list[list[StoredHit]]:
        qe = self._qe
        requests = [
            qe.QueryRequest(limit=k, query=qe.Query.Nearest(vec), with_payload=True, filter=self._entity_filter(names))
            for vec, names in zip(vectors.tolist(), entities)
        ]
        batches = self._call(self._shard.query_batch, qe.QueryBatchRequest(requests))
        return [[StoredHit(str(p.id), float(p.score), dict(p.payload)) for p in points] for points in batches]

    def payloads(self) -> Iterator[dict]:
        offset = None
        while True:
            request = self._qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=list(ENTITY_FIELDS) + ["relation"])
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

    def __init__(self, url: str, api_key: str | None, collection: str, dim: int, timeout_s: float = 10.0,
                 shards: int = 1, replicas: int = 1) -> None:
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
        except Exception as exc:  # connection refused, timeouts, HTTP errors from the server
            raise StoreError(f"cannot open collection {collection!r} at {url}: {exc}") from exc

    def _create(self, dim: int, shards: int, replicas: int) -> None:
        m = self._m
        self._client.create_collection(
            self.collection,
            vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
            shard_number=shards, replication_factor=replicas,
            hnsw_config=m.HnswConfigDiff(m=16, ef_construct=128, full_scan_threshold=10_000),
        )
        if self.backend == "qdrant-server":  # local mode has no payload indexes and warns
            for field in ENTITY_FIELDS:
                self._client.create_payload_index(self.collection, field, m.PayloadSchemaType.KEYWORD)

    def _entity_filter(self, names: Sequence[str] | None):
        if not names:
            return None
        m = self._m
        return m.Filter(should=[m.FieldCondition(key=f, match=m.MatchAny(any=list(names))) for f in ENTITY_FIELDS])

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # qdrant-client raises transport, HTTP and gRPC errors
            raise StoreError(f"Qdrant ({self.backend}): {exc}") from exc

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        points = [self._m.PointStruct(id=pid, vector=vec, payload=payload)
                  for pid, vec, payload in zip(ids, vectors.tolist(), payloads)]
        self._call(self._client.upsert, self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        selector = self._m.PointIdsList(points=list(ids))
        self._call(self._client.delete, self.collection, points_selector=selector, wait=True)

    def existing(self, ids: Sequence[str]) -> list[str]:
        return list(self.fetch(ids, with_payload=False))

    def fetch(self, ids: Sequence[str], with_payload: bool = True) -> dict[str, dict]:
        records = self._call(self._client.retrieve, self.collection, ids=list(ids), with_payload=with_payload)
        return {str(uuid.UUID(str(r.id))): dict(r.payload or {}) for r in records}

    def search(self, vectors: np.ndarray, k: int, entities: Sequence[Sequence[str] | None]) -> list[list[StoredHit]]:
        m = self._m
        requests = [m.QueryRequest(query=vec, limit=k, filter=self._entity_filter(names), with_payload=True)
                    for vec, names in zip(vectors.tolist(), entities)]
        responses = self._call(self._client.query_batch_points, self.collection, requests=requests)
        return [[StoredHit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]

    def payloads(self) -> Iterator[dict]:
        offset = None
        while True:
            records, offset = self._call(
                self._client.scroll, self.collection, limit=SCROLL_PAGE, offset=offset,
                with_payload=list(ENTITY_FIELDS) + ["relation"], with_vectors=False,
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
