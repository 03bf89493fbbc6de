"""What the retriever app holds while it runs: settings, encoder, store, entity index, metrics.

The store is opened lazily and reopened after a failure, so a Qdrant server that is down at
start-up or goes away later gives 503s until it is back, not a dead service.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from retriever_service.encoder import Encoder
from retriever_service.entity_linking import EntityIndex
from retriever_service.path_search import PathSearch
from retriever_service.relation_prior import RelationPrior
from retriever_service.retrieval import Retriever
from retriever_service.settings import RetrieverSettings
from retriever_service.store import FactStore, StoreError, open_store
from shared.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class RetrieverState:
    settings: RetrieverSettings
    encoder: Encoder
    metrics: Metrics
    entities: EntityIndex = field(default_factory=EntityIndex)
    _store: FactStore | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.relations = RelationPrior.load(self.settings.relation_prior_path)
        self._durations = {
            "search": self.metrics.histogram("search_duration_seconds", "Qdrant search time per call"),
            "embed": self.metrics.histogram("embed_duration_seconds", "query embedding time per call"),
        }
        self.facts_gauge = self.metrics.gauge("facts", "facts stored")

    def store(self) -> FactStore:
        """The open store, opening it (and indexing its entity names) on first use."""
        if self._store is not None:
            return self._store
        with self._lock:
            if self._store is None:
                s = self.settings
                key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
                store = open_store(
                    url=s.qdrant_url,
                    api_key=key,
                    path=s.data_dir,
                    collection=s.collection,
                    dim=self.encoder.dim,
                    shards=s.qdrant_shards,
                    replicas=s.qdrant_replication_factor,
                )
                self._index_entities(store)
                self._store = store
        return self._store

    def _index_entities(self, store: FactStore) -> None:
        start = time.perf_counter()
        entities = EntityIndex()
        batch: list[dict] = []
        for payload in store.payloads():
            batch.append(payload)
            if len(batch) >= 4096:
                entities.update(batch)
                batch.clear()
        entities.update(batch)
        self.entities = entities
        log.info("entity index: %d names in %.1fs", len(entities), time.perf_counter() - start)

    def store_failed(self, exc: StoreError) -> None:
        """Forget a server store after an error, so the next request reconnects."""
        if self._store is not None and self.settings.qdrant_url and self.settings.qdrant_url != ":memory:":
            log.warning("store error, will reconnect: %s", exc)
            with self._lock:
                failed, self._store = self._store, None
            if failed is not None:
                try:
                    failed.close()  # release the old client's connections
                except Exception:  # closing a client whose server is gone may fail too
                    log.debug("closing the failed store", exc_info=True)

    def path_search(self) -> PathSearch:
        """The path search over the store, with the fitted chain prior, or without one every one-step chain of
        the stored relations equally likely (cosine decides, as for facts)."""
        prior = self.relations or RelationPrior.uniform(self.entities.relations, self.encoder.dim)
        return PathSearch(
            self.encoder,
            self.store(),
            self.entities,
            prior,
            self.settings.tau,
            observe=lambda stage, seconds: self._durations[stage].observe(seconds),
        )

    def retriever(self) -> Retriever:
        return Retriever(
            self.encoder,
            self.store(),
            self.entities,
            self.settings.tau,
            relations=self.relations,
            rerank_pool=self.settings.rerank_pool,
            observe=lambda stage, seconds: self._durations[stage].observe(seconds),
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
