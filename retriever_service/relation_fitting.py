"""Fitting the relation prior from questions with known answers (see `relation_prior.py`).

A question is labelled with the keys of its gold facts: facts retrieved for its (bracketed or
linked) topic entity that connect it to one of the answers. The regression is fitted on most of the
questions; weight and temperature are picked on the rest by recall@5 (then @1) of a gold fact,
with brackets stripped, and the prior is refitted on all questions with the picked values.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from dataclasses import dataclass

import numpy as np

from retriever_service.relation_prior import RelationPrior, relation_key
from retriever_service.retrieval import Retriever
from shared.qa_data import Question

log = logging.getLogger(__name__)

WEIGHTS = (0.1, 0.3, 1.0, 3.0)
TEMPERATURES = (0.5, 1.0, 2.0)  # of the regression's logits


@dataclass
class FitReport:
    labelled: int
    unlabelled: int
    keys: dict[str, int]
    grid: list[dict]
    chosen: dict
    held_out_key_accuracy: float  # of the regression fitted on the rest: its top key is a gold fact's


def is_gold(fact, question: Question) -> bool:
    """A fact linking the question's topic entity (when marked) to one of its answers."""
    ends = {fact.subject, fact.object}
    return (question.topic is None or question.topic in ends) and not ends.isdisjoint(question.answers)


def label_questions(retriever: Retriever, questions: list[Question], pool: int) -> tuple[np.ndarray, list[set[str]]]:
    """Question vectors (N, H) and the relation keys of their gold facts (empty when none is found)."""
    saved, retriever.relations = retriever.relations, None
    try:
        labels: list[set[str]] = []
        for start in range(0, len(questions), 64):
            chunk = questions[start : start + 64]
            for q, result in zip(chunk, retriever.search([q.text for q in chunk], pool)):
                names = {n for e in result.linked for n in e.names}
                labels.append({relation_key(vars(f), names) for f in result.facts if is_gold(f, q)})
    finally:
        retriever.relations = saved
    return retriever.relation_vectors([q.text for q in questions]), labels  # the bracketed topic masked


def recall_at(retriever: Retriever, questions: list[Question], ks=(1, 5, 10, 20), hints: bool = False) -> dict[int, float]:
    """Share of questions with a gold fact in the top k; brackets stripped unless kept as `hints`."""
    ranks = []
    for start in range(0, len(questions), 64):
        chunk = questions[start : start + 64]
        for q, result in zip(chunk, retriever.search([q.text if hints else q.stripped for q in chunk], max(ks))):
            ranks.append(next((i for i, f in enumerate(result.facts) if is_gold(f, q)), len(result.facts) + max(ks)))
    return {k: float(np.mean(np.asarray(ranks) < k)) for k in ks}


def key_accuracy(prior: RelationPrior, vectors: np.ndarray, labels: list[set[str]]) -> float:
    """Share of questions whose most likely key is one of their gold facts' keys."""
    top = prior.log_probs(vectors).argmax(axis=1)  # (N,)
    return float(np.mean([prior.keys[t] in ks for t, ks in zip(top, labels)]))


def fit_relation_prior(retriever: Retriever, questions: list[Question], *, holdout: float = 0.2,
                       seed: int = 0, pool: int = 100) -> tuple[RelationPrior, FitReport]:
    vectors, labels = label_questions(retriever, questions, pool)
    rows = [i for i, ks in enumerate(labels) if ks]
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - holdout))
    train, held = rows[:cut], rows[cut:]
    fitted = RelationPrior.fit(vectors[train], [labels[i] for i in train])  # weight and temperature do not enter the fit
    grid = []
    for weight, temperature in itertools.product(WEIGHTS, TEMPERATURES):
        retriever.relations = dataclasses.replace(fitted, weight=weight, temperature=temperature)
        recall = recall_at(retriever, [questions[i] for i in held])
        grid.append({"weight": weight, "temperature": temperature, **{f"recall@{k}": v for k, v in recall.items()}})
        log.info("weight %.2f temperature %.2f: %s", weight, temperature, recall)
    best = max(grid, key=lambda g: (g["recall@5"], g["recall@1"]))
    accuracy = key_accuracy(fitted, vectors[held], [labels[i] for i in held])
    prior = RelationPrior.fit(vectors[rows], [labels[i] for i in rows],
                              weight=best["weight"], temperature=best["temperature"])
    retriever.relations = prior
    keys = {k: sum(k in ls for ls in labels) for k in prior.keys}
    return prior, FitReport(len(rows), len(questions) - len(rows), keys, grid, best, accuracy)
