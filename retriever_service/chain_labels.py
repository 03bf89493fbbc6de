"""Which relation chains answer a training question: the labels the chain prior is fitted on.

A question with known answers is labelled with the chains from its topic entity whose answers
(`KGGraph.walk`) match its gold answers best, by F1; all equally good chains are labels (a director
who wrote every film he directed makes "directed_by^-1" and "written_by^-1" equally right). A question
no chain answers (its gold is not in the graph as seen from its topic) gets no label: it is what the
abstention is calibrated on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from retriever_service.chains import MAX_HOPS, chain_key
from retriever_service.kg_graph import KGGraph
from shared.names import fold

MAX_FRONTIER = 2000  # a chain whose walk passes this many entities at a step is not followed (hubs)


@dataclass(frozen=True)
class ChainLabel:
    keys: frozenset[str]  # the best chains' keys; empty when no chain reaches a gold answer
    f1: float  # their answer-set F1 against the gold answers
    hops: int  # the shortest one's length (0 when unlabelled)


def f1_score(found: set[str], gold: set[str]) -> float:
    hit = len(found & gold)
    if not hit:
        return 0.0
    precision, recall = hit / len(found), hit / len(gold)
    return 2 * precision * recall / (precision + recall)


def label_question(
    graph: KGGraph, topics: Iterable[str], answers: Iterable[str], hops: int | None = None
) -> ChainLabel:
    """The chains from the topic names that best answer the question (names compared folded): of `hops` steps
    when the question's hop count is known (MetaQA's files say it), else of 1 to MAX_HOPS. A known count
    keeps a chance coincidence out of the labels: a 3-hop question whose chain the graph cannot walk to the
    end (a missing triple) may still share its answer with the topic's own director."""
    starts = set(topics)
    gold = {fold(a) for a in answers}
    keys: set[str] = set()
    best, shortest = 0.0, 0
    for chain, reached in graph.chains_from(starts, hops or MAX_HOPS, MAX_FRONTIER):
        if hops is not None and len(chain) != hops:
            continue
        score = f1_score({_fold(e) for e in reached}, gold)
        if score == 0.0 or score < best:
            continue
        if score > best:
            best, keys, shortest = score, set(), len(chain)
        keys.add(chain_key(chain))
        shortest = min(shortest, len(chain))
    return ChainLabel(frozenset(keys), best, shortest)


@lru_cache(maxsize=1 << 18)
def _fold(name: str) -> str:
    return fold(name)
