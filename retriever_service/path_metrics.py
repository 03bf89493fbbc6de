"""How well a search answered questions with known answers: the figures fitting picks by and the benchmarks
report, for path searches (answer sets, chains) and fact searches (recall of a gold fact). Path answers are
compared folded (`shared.names.fold`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retriever_service.chain_labels import f1_score
from retriever_service.path_search import PathSearchResult
from retriever_service.retrieval import Retriever
from shared.names import fold
from shared.qa_data import Question


@dataclass(frozen=True)
class PathScore:
    hit: bool  # the best document's end is a gold answer
    chain_recall: bool  # a grounded chain of the beam reaches a gold answer
    support: float  # the prior's mass on the grounded chains (what abstention looks at)
    probs: dict[str, float]  # every returned answer's probability of being an answer, by folded name
    gold: frozenset[str]  # folded gold answers

    @property
    def gold_prob(self) -> float:
        """The highest probability of being an answer that the search gave a gold answer (0 for none)."""
        return max((self.probs.get(name, 0.0) for name in self.gold), default=0.0)

    def answer_set(self, threshold: float) -> set[str]:
        return {name for name, prob in self.probs.items() if prob >= threshold}

    def f1(self, threshold: float) -> float:
        if not self.gold:
            return float(not self.answer_set(threshold))
        return f1_score(self.answer_set(threshold), set(self.gold))


def score_result(result: PathSearchResult, answers: tuple[str, ...]) -> PathScore:
    gold = frozenset(fold(a) for a in answers)
    top = fold(result.paths[0].path.entities[-1]) if result.paths else None
    reach = any(fold(p.entities[-1]) in gold for c in result.chains for p in c.paths)
    probs: dict[str, float] = {}
    for a in result.answers:
        probs[fold(a.name)] = max(probs.get(fold(a.name), 0.0), a.prob)
    return PathScore(top in gold, reach, result.support, probs, gold)


ANSWER_THRESHOLD_GRID = tuple(i / 20 for i in range(1, 20))


def best_answer_threshold(
    scores: list[PathScore], grid: tuple[float, ...] = ANSWER_THRESHOLD_GRID
) -> tuple[float, float]:
    """(threshold, mean F1) maximising the mean answer-set F1 over answerable questions."""
    answerable = [s for s in scores if s.gold]
    if not answerable:
        return 0.5, 0.0
    return max(((t, sum(s.f1(t) for s in answerable) / len(answerable)) for t in grid), key=lambda tf: (tf[1], -tf[0]))


def best_abstain_threshold(
    answerable: list[float], unanswerable: list[float], keep: float = 0.98, abstain: float | None = None
) -> tuple[float, dict]:
    """The support threshold that abstains on the most unanswerable questions while still answering at least
    `keep` of the answerable ones (support >= threshold answers). With `abstain`, the threshold midway between
    that one and the lowest that abstains on that share of the unanswerable, when it is lower: questions
    phrased unlike those the thresholds were chosen on sit between the two. Returns it and both shares."""
    if not answerable:
        return 0.0, {"answered": 0.0, "abstained": 0.0}
    ordered = sorted(answerable)
    best = ordered[len(ordered) - math.ceil(keep * len(ordered))]  # the largest t with enough supports >= t
    if abstain is not None and unanswerable:
        below = sorted(unanswerable)
        lowest = below[min(len(below) - 1, math.ceil(abstain * len(below)) - 1)] + 1e-6  # abstains on that share
        best = (best + lowest) / 2 if lowest < best else best
    return best, abstention_rates(answerable, unanswerable, best)


def abstention_rates(answerable: list[float], unanswerable: list[float], threshold: float) -> dict:
    return {
        "answered": sum(s >= threshold for s in answerable) / max(1, len(answerable)),
        "abstained": sum(s < threshold for s in unanswerable) / max(1, len(unanswerable)),
    }


def is_gold(fact, question: Question) -> bool:
    """A fact linking the question's topic entity (when marked) to one of its answers."""
    ends = {fact.subject, fact.object}
    return (question.topic is None or question.topic in ends) and not ends.isdisjoint(question.answers)


def recall_at(
    retriever: Retriever, questions: list[Question], ks=(1, 5, 10, 20), hints: bool = False
) -> dict[int, float]:
    """Share of questions with a gold fact in a fact search's top k; brackets stripped unless kept as `hints`."""
    ranks = []
    for start in range(0, len(questions), 64):
        chunk = questions[start : start + 64]
        results = retriever.search([q.text if hints else q.stripped for q in chunk], max(ks))
        for q, result in zip(chunk, results, strict=True):
            ranks.append(next((i for i, f in enumerate(result.facts) if is_gold(f, q)), len(result.facts) + max(ks)))
    return {k: float(np.mean(np.asarray(ranks) < k)) for k in ks}
