"""Retrieval: link the question's entities, rank the facts touching them, and give the prior.

Candidate facts are those whose subject or object is a linked entity, ranked by cosine
similarity to the question (plus the relation prior's term when one has been fitted; see
`relation_prior.py`); with no entity found, plain dense search over all facts. The prior over
the k facts returned is `p(d|x) = softmax(score / tau)`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from retriever_service.encoder import Encoder
from retriever_service.entity_linking import EntityIndex, LinkedEntity, mask_mention
from retriever_service.relation_prior import RelationPrior, relation_key
from retriever_service.store import FactStore, StoredHit

_BRACKETS = re.compile(r"[\[\]]")


@dataclass
class RetrievedFact:
    id: str
    subject: str
    relation: str
    object: str
    text: str
    cosine: float
    score: float
    prior: float


@dataclass
class SearchResult:
    query: str
    facts: list[RetrievedFact]
    linked: list[LinkedEntity] = field(default_factory=list)


def softmax_prior(scores: list[float], tau: float) -> list[float]:
    """p(d|x) = softmax(score / tau), computed stably."""
    if not scores:
        return []
    top = max(scores)
    weights = [math.exp((s - top) / tau) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


class Retriever:
    def __init__(self, encoder: Encoder, store: FactStore, entities: EntityIndex, tau: float,
                 relations: RelationPrior | None = None, rerank_pool: int = 100,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.encoder = encoder
        self.store = store
        self.entities = entities
        self.tau = tau
        self.relations = relations
        self.rerank_pool = rerank_pool
        self.observe = observe or (lambda stage, seconds: None)  # stage: "embed" or "search"

    def search(self, queries: list[str], k: int, *, link: bool = True) -> list[SearchResult]:
        """Top-k facts for each query; `link=False` is plain dense search over all facts."""
        links = [self.entities.link(q) if link else [] for q in queries]
        filters = [sorted({name for e in linked for name in e.names}) or None for linked in links]
        rerank = self.relations is not None and any(filters)
        start = time.perf_counter()
        vectors = self.encoder.encode([_BRACKETS.sub("", q) for q in queries])  # (Q, H)
        log_probs = self.relations.log_probs(self.relation_vectors(queries, links)) if rerank else None  # (Q, R)
        self.observe("embed", time.perf_counter() - start)
        start = time.perf_counter()
        hits = self.store.search(vectors, max(k, self.rerank_pool) if rerank else k, filters)
        self.observe("search", time.perf_counter() - start)
        results = []
        for i, (query, found, names) in enumerate(zip(queries, hits, filters)):
            scores = [h.score for h in found]
            if rerank and names:
                keys = [relation_key(h.payload, set(names)) for h in found]
                scores = self.relations.rescore(scores, keys, log_probs[i])
            order = np.argsort(-np.asarray(scores), kind="stable")[:k]
            results.append(SearchResult(query, self._facts([found[j] for j in order], [scores[j] for j in order]), links[i]))
        return results

    def relation_vectors(self, queries: list[str], links: list[list[LinkedEntity]] | None = None) -> np.ndarray:
        """What the relation prior reads: the vectors (Q, H) of the questions with their linked mention masked."""
        links = [self.entities.link(q) for q in queries] if links is None else links
        return self.encoder.encode([mask_mention(q, linked) for q, linked in zip(queries, links)])

    def _facts(self, hits: list[StoredHit], scores: list[float]) -> list[RetrievedFact]:
        priors = softmax_prior(scores, self.tau)
        return [
            RetrievedFact(id=h.id, subject=h.payload["subject"], relation=h.payload["relation"],
                          object=h.payload["object"], text=h.payload["text"], cosine=h.score, score=s, prior=p)
            for h, s, p in zip(hits, scores, priors)
        ]
