"""Ingestion: triples -> fact sentences -> MiniLM vectors -> the store (and the entity index).

Facts are keyed by the id of their triple, so a file loaded twice, or a run killed half-way and
run again, stores each fact once; facts already stored are not embedded again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tqdm import tqdm

from retriever_service.encoder import Encoder
from retriever_service.entity_linking import EntityIndex
from retriever_service.store import FactStore
from shared.facts import Triple

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    received: int = 0  # triples read (duplicates included)
    added: int = 0  # facts that were not stored before
    existing: int = 0  # facts already stored, left as they were

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "added": self.added, "existing": self.existing}


def _batches(items: Iterable[Triple], size: int) -> Iterator[list[Triple]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def ingest_triples(
    triples: Iterable[Triple],
    *,
    encoder: Encoder,
    store: FactStore,
    entities: EntityIndex | None = None,
    batch_size: int = 2048,
    progress: bool = False,
    on_batch: Callable[[IngestStats], None] | None = None,
) -> IngestStats:
    """Embed and store the triples' facts in batches; `on_batch` is called after each batch is stored
    (a load records its checkpoint there: what the stream gave so far is in the store)."""
    stats = IngestStats()
    bar = tqdm(unit=" facts", desc="ingest", disable=not progress, smoothing=0.05)
    for batch in _batches(triples, batch_size):
        stats.received += len(batch)
        unique = list({t.id: t for t in batch}.values())
        present = set(store.existing([t.id for t in unique]))
        new = [t for t in unique if t.id not in present]
        stats.existing += len(batch) - len(new)
        if new:
            payloads = [t.payload() for t in new]
            vectors = encoder.encode([p["text"] for p in payloads])
            store.upsert([t.id for t in new], vectors, payloads)
            if entities is not None:
                entities.update(payloads, +1)
            stats.added += len(new)
        bar.update(len(batch))
        bar.set_postfix(added=f"{stats.added:,}", refresh=False)  # a string: tqdm writes 10000 as "1e+4"
        if on_batch is not None:
            on_batch(stats)
    bar.close()
    return stats


def delete_facts(ids: list[str], *, store: FactStore, entities: EntityIndex | None = None) -> int:
    """Delete facts by id; returns how many were stored. The entity index forgets unused names."""
    stored = store.fetch(list(dict.fromkeys(ids)))
    if stored:
        store.delete(list(stored))
        if entities is not None:
            entities.update(list(stored.values()), -1)
    return len(stored)
