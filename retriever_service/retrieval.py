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
from retriever_service.store import FactFilter, FactStore, StoredHit

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


def strip_brackets(query: str) -> str:
    """The question as embedded: a `[bracketed]` topic hint without its brackets."""
    return _BRACKETS.sub("", query)


def softmax_prior(scores: list[float], tau: float) -> list[float]:
    """p(d|x) = softmax(score / tau), computed stably."""
    if not scores:
        return []
    top = max(scores)
    weights = [math.exp((s - top) / tau) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


class Retriever:
    def __init__(
        self,
        encoder: Encoder,
        store: FactStore,
        entities: EntityIndex,
        tau: float,
        relations: RelationPrior | None = None,
        rerank_pool: int = 100,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
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
        relations = self.relations if any(filters) else None  # reranks when any entity is linked
        rerank = relations is not None
        start = time.perf_counter()
        masked = (
            [mask_mention(q, mention) for q, linked in zip(queries, links, strict=True) for mention in linked]
            if rerank
            else []
        )
        vectors = self.encoder.encode([strip_brackets(q) for q in queries] + masked)  # (Q + M, H): one pass
        readings = self._readings(relations, vectors[len(queries) :], links) if relations is not None else []
        vectors = vectors[: len(queries)]  # (Q, H)
        self.observe("embed", time.perf_counter() - start)
        start = time.perf_counter()
        hits = self.store.search(
            vectors, max(k, self.rerank_pool) if rerank else k, [FactFilter.touching(f) for f in filters]
        )
        self.observe("search", time.perf_counter() - start)
        results = []
        for i, (query, found, names) in enumerate(zip(queries, hits, filters, strict=True)):
            scores = (
                self._rescore(relations, found, links[i], readings[i])
                if relations is not None and names
                else [h.score for h in found]
            )
            order = np.argsort(-np.asarray(scores), kind="stable")[:k]
            results.append(
                SearchResult(query, self._facts([found[j] for j in order], [scores[j] for j in order]), links[i])
            )
        return results

    def relation_vectors(self, queries: list[str]) -> np.ndarray:
        """The vectors (Q, H) of the questions with their best-linked mention masked (a `[bracketed]`
        topic when there is one): what the relation prior is fitted on."""
        return self.encoder.encode([mask_mention(q, next(iter(self.entities.link(q)), None)) for q in queries])

    @staticmethod
    def _readings(relations: RelationPrior, masked: np.ndarray, links: list[list[LinkedEntity]]) -> list[np.ndarray]:
        """log p(key | question read about mention m), (M, R) per query, from the vectors (sum M, H) of
        the question with each linked mention masked in turn, so that a title like "Tension" is not
        read with "actors" masked in "who are the actors in Tension" (the tag "actors" is an entity too)."""
        log_probs = relations.log_probs(masked)  # (sum M, R)
        return np.split(log_probs, np.cumsum([len(linked) for linked in links])[:-1])

    @staticmethod
    def _rescore(
        relations: RelationPrior, found: list[StoredHit], linked: list[LinkedEntity], log_probs: np.ndarray
    ) -> list[float]:
        """cosine + weight * log p(key | question), read about the linked mention the fact touches
        (the best reading when it touches several)."""
        names = [set(m.names) for m in linked]  # once per query, not per candidate (rerank_pool of them)
        scores = []
        for hit in found:
            ends = {hit.payload["subject"], hit.payload["object"]}
            terms = [
                relations.log_prob(relation_key(hit.payload, mention), log_probs[j])
                for j, mention in enumerate(names)
                if not ends.isdisjoint(mention)
            ]
            scores.append(hit.score + relations.weight * max(terms))
        return scores

    def _facts(self, hits: list[StoredHit], scores: list[float]) -> list[RetrievedFact]:
        priors = softmax_prior(scores, self.tau)
        return [
            RetrievedFact(
                id=h.id,
                subject=h.payload["subject"],
                relation=h.payload["relation"],
                object=h.payload["object"],
                text=h.payload["text"],
                cosine=h.score,
                score=s,
                prior=p,
            )
            for h, s, p in zip(hits, scores, priors, strict=True)
        ]
