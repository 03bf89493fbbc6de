"""Fitting the chain prior (`relation_prior.py`) and choosing what the path search is tuned by.

Questions come from files with known answers (MetaQA's 1/2/3-hop dev, JSONL `{question, answers,
hops?}`; the topic entity `[bracketed]`), from the KG itself (`question_generation.py`: every chain
of up to two steps, for a KG without questions), or both. Negatives, questions about relations
the KG lacks, are always added, labelled NONE_KEY, with questions in the same generated phrasings
about the KG's own relations beside them (so that phrasing alone does not mark a negative).

1. Each question is labelled with the chains that best answer it (`chain_labels.py`); questions
   no chain answers are kept aside: they are the "not in the graph" cases abstention is tuned on.
2. The regression is fitted on most questions (their topic masked); on the held-out rest, with
   brackets stripped, weight and temperature are chosen by Hits@1 of the best path's end, then
   the answer-set threshold by mean F1 and the abstention threshold as the largest support that
   still answers 98% of the answerable questions (99.5% when most are generated, and then midway
   down to the support that abstains on 90% of the held-out negatives: people's questions are
   phrased unlike the generated ones, and their support falls between).
3. It is refitted on all questions with the chosen values, which it carries when saved.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever_service.chain_labels import label_question
from retriever_service.chains import NONE_KEY, Step
from retriever_service.entity_linking import ALIAS_RELATIONS, EntityIndex, mask_mention
from retriever_service.kg_graph import KGGraph
from retriever_service.path_metrics import (
    PathScore,
    abstention_rates,
    best_abstain_threshold,
    best_answer_threshold,
    score_result,
)
from retriever_service.path_search import PathLimits, PathSearch
from retriever_service.question_generation import GeneratedQuestion, chain_questions, negative_questions
from retriever_service.relation_prior import RelationPrior
from retriever_service.relation_words import RelationWords
from retriever_service.type_nouns import step_type_nouns
from shared.qa_data import read_questions

log = logging.getLogger(__name__)

WEIGHTS = (0.1, 0.3, 1.0, 3.0)
TEMPERATURES = (0.5, 1.0, 2.0)  # of the regression's logits
MENTION_PENALTIES = (0.0, 0.1, 0.3)  # tried after weight and temperature, with the best of those
NAMING_WEIGHTS = (0.0, 0.1, 0.3)  # tried last, with the best of the others
MIN_TUNING = 50  # held-out answerable questions the abstention threshold needs to be chosen
KEEP_ANSWERED = 0.98  # share of held-out answerable questions the abstention threshold must still answer
# ... when they are all generated: their phrasings are the prior's own, so people's questions sit lower
KEEP_ANSWERED_GENERATED = 0.995
# ... and the threshold is set midway to the one that abstains on this share of the held-out negatives
ABSTAIN_GENERATED = 0.9
_HOPS_DIR = re.compile(r"^(\d)-hop$")
_BRACKETED = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class TrainingQuestion:
    text: str  # the topic [bracketed] when known: masked to fit, the brackets stripped to evaluate
    answers: tuple[str, ...]  # empty for a negative
    hops: int | None  # the length of the chain it asks for, when the source says it
    source: str
    chain: str | None = None  # the chain a generated question was written from (NONE_KEY for a negative)


@dataclass
class FitReport:
    questions: dict[str, int]  # by source
    labelled: int
    unlabelled: int  # answerable by no chain from the topic: the "not in the graph" examples
    keys: int
    grid: list[dict]
    chosen: dict
    held_out: dict  # the held-out figures with the chosen values
    seconds: dict = field(default_factory=dict)


def read_training_questions(path: Path) -> list[TrainingQuestion]:
    """A question file's questions; hops from a MetaQA `N-hop/` folder or a JSONL row's `hops`."""
    match = _HOPS_DIR.match(Path(path).parent.name)
    hops = int(match[1]) if match else None
    rows = read_questions(path)
    extra = _jsonl_hops(path) if hops is None else [hops] * len(rows)
    return [TrainingQuestion(q.text, q.answers, h, str(path)) for q, h in zip(rows, extra, strict=True)]


def _jsonl_hops(path: Path) -> list[int | None]:
    if Path(path).suffix != ".jsonl":
        return [None] * len(read_questions(path))
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line).get("hops") for line in fh if line.strip()]


def generated_training_questions(
    graph: KGGraph,
    topics: list[str],
    *,
    from_kg: bool,
    seed: int,
    others: int = 0,
    max_hops: int = 2,
    per_chain: int = 25,
    types: Mapping[Step, str] | None = None,
    words: RelationWords | None = None,
) -> list[TrainingQuestion]:
    """Negatives about absent relations (always), with one-step questions of the KG's own relations in the same
    phrasings; with from_kg, questions about every chain of up to max_hops steps. The negatives are about as many
    as a chain's questions (twice per_chain, or a fiftieth of the `others` given): as the largest class by far,
    `<none>` took every phrasing the generated questions lacked, and the paraphrases of real relations with it.
    types: the noun of each step's ends (`type_nouns.step_type_nouns`), which the questions use when given;
    words: the relations' other words (`relation_words.py`), which they name relations by beside the labels."""
    rng = random.Random(seed)
    written = chain_questions(
        graph,
        max_hops=max_hops if from_kg else 1,
        per_chain=per_chain,
        max_answers=10,
        rng=rng,
        types=types,
        words=words,
    )
    count = max(2 * per_chain, others // 50)
    negatives = negative_questions(graph, topics or [q.topic for q in written], count, rng, words)
    return [_bracketed(q, "generated" if q.chain != NONE_KEY else "negative") for q in written + negatives]


def _bracketed(q: GeneratedQuestion, source: str) -> TrainingQuestion:
    text = q.text.replace(q.topic, f"[{q.topic}]", 1)
    return TrainingQuestion(text, q.answers, None, source, q.chain)


def label_all(graph: KGGraph, entities: EntityIndex, questions: list[TrainingQuestion]) -> list[set[str]]:
    """Each question's chain labels: the generated chain, NONE_KEY for a negative, else the best chains from its
    topic (empty: no chain answers it)."""
    labels = []
    for q in questions:
        if q.chain is not None:
            labels.append({q.chain})
            continue
        linked = entities.link(q.text)
        topics = linked[0].names if linked else ()
        labels.append(set(label_question(graph, topics, q.answers, q.hops).keys))
    return labels


def fit_chain_prior(
    search: PathSearch,
    graph: KGGraph,
    questions: list[TrainingQuestion],
    *,
    holdout: float = 0.2,
    seed: int = 0,
    limits: PathLimits = PathLimits(),
    max_eval: int = 1500,
    keep: float = KEEP_ANSWERED,
    abstain: float | None = None,
) -> tuple[RelationPrior, FitReport]:
    """Fit, tune and refit (module docstring); `search` is used with each candidate prior in turn. keep and
    abstain choose the abstention threshold (`path_metrics.best_abstain_threshold`)."""
    seconds, start = {}, time.perf_counter()
    labels = label_all(graph, search.entities, questions)
    seconds["label"] = time.perf_counter() - start
    vectors = search.encoder.encode(
        [mask_mention(q.text, next(iter(search.entities.link(q.text)), None)) for q in questions]
    )  # (N, H)
    seconds["encode"] = time.perf_counter() - start - seconds["label"]
    rows = list(range(len(questions)))
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - holdout))
    train = [i for i in rows[:cut] if labels[i]]
    held = rows[cut:]
    evaluated = held[:max_eval]
    fitted = RelationPrior.fit(vectors[train], [labels[i] for i in train])
    tuning = evaluated[: max_eval // 3]
    chosen, grid = _tune(search, fitted, questions, tuning, labels, limits)
    search.prior = dataclasses.replace(fitted, **chosen)
    scores = _scores(search, questions, evaluated, limits)
    held_out = _thresholds(scores, [labels[i] for i in evaluated], [questions[i] for i in evaluated], keep, abstain)
    seconds["tune"] = time.perf_counter() - start - seconds["label"] - seconds["encode"]
    usable = [i for i in rows if labels[i]]
    prior = RelationPrior.fit(
        vectors[usable],
        [labels[i] for i in usable],
        **chosen,
        answer_threshold=held_out["answer_threshold"],
        abstain_threshold=held_out["abstain_threshold"],
    )
    search.prior = prior
    sources = {s: sum(q.source == s for q in questions) for s in dict.fromkeys(q.source for q in questions)}
    report = FitReport(
        sources,
        sum(bool(ls) for ls in labels),
        sum(not ls for ls in labels),
        len(prior.keys),
        grid,
        max(grid, key=_rank),
        held_out,
        {k: round(v, 1) for k, v in seconds.items()},
    )
    return prior, report


def _tune(search, fitted, questions, tuning, labels, limits) -> tuple[dict[str, Any], list[dict]]:
    """Weight and temperature on a grid, then the mention penalty, then the naming weight, each with the best of
    those before it, by `_rank` on the tuning questions; the values chosen and every point tried."""
    best: dict[str, Any] = {"mention_penalty": MENTION_PENALTIES[0], "naming_weight": NAMING_WEIGHTS[0]}
    trials = [
        [{"weight": w, "temperature": t} for w, t in itertools.product(WEIGHTS, TEMPERATURES)],
        [{"mention_penalty": m} for m in MENTION_PENALTIES[1:]],
        [{"naming_weight": n} for n in NAMING_WEIGHTS[1:]],
    ]
    points: list[dict] = []
    for trial in trials:
        points += [_grid_point(search, fitted, questions, tuning, labels, limits, **(best | v)) for v in trial]
        top = max(points, key=_rank)
        best = {name: top[name] for name in ("weight", "temperature", "mention_penalty", "naming_weight")}
    return best, points


def _rank(point: dict) -> tuple:
    """Hits@1 first, then chain recall, then the probability the answer set gives the gold answers; among
    equals, the first tried (the smallest mention penalty and naming weight)."""
    return point["hits@1"], point["chain_recall"], round(point["gold_prob"], 4)


def _grid_point(search, fitted, questions, rows, labels, limits, **values: float) -> dict:
    search.prior = dataclasses.replace(fitted, **values)
    answerable = [i for i in rows if labels[i] and labels[i] != {NONE_KEY}]
    scores = _scores(search, questions, answerable, limits)
    point = {
        **values,
        "questions": len(scores),
        "hits@1": float(np.mean([s.hit for s in scores])) if scores else 0.0,
        "chain_recall": float(np.mean([s.chain_recall for s in scores])) if scores else 0.0,
        "gold_prob": float(np.mean([s.gold_prob for s in scores])) if scores else 0.0,
    }
    log.info("grid %s", point)
    return point


def _scores(
    search: PathSearch,
    questions: list[TrainingQuestion],
    rows: list[int],
    limits: PathLimits,
    k: int = 5,
    batch: int = 32,
) -> list[PathScore]:
    """Path search over the questions (brackets stripped), scored against their answers."""
    scores: list[PathScore] = []
    for start in range(0, len(rows), batch):
        chunk = [questions[i] for i in rows[start : start + batch]]
        results = search.search([q.text.replace("[", "").replace("]", "") for q in chunk], k, limits)
        scores.extend(score_result(r, q.answers) for r, q in zip(results, chunk, strict=True))
    return scores


def _thresholds(
    scores: list[PathScore],
    labels: list[set[str]],
    questions: list[TrainingQuestion],
    keep: float,
    abstain: float | None,
) -> dict:
    """The answer-set and abstention thresholds, from held-out questions: answerable ones have a chain label."""
    answerable = [s for s, ls in zip(scores, labels, strict=True) if ls and ls != {NONE_KEY}]
    unanswerable = [s for s, ls in zip(scores, labels, strict=True) if not ls or ls == {NONE_KEY}]
    answer_threshold, f1 = best_answer_threshold(answerable)
    abstain_threshold, rates = best_abstain_threshold(
        [s.support for s in answerable], [s.support for s in unanswerable], keep, abstain
    )
    if len(answerable) < MIN_TUNING:  # too few to choose from: no abstention on support alone
        abstain_threshold, rates = (
            0.0,
            abstention_rates([s.support for s in answerable], [s.support for s in unanswerable], 0.0),
        )
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hits@1": float(np.mean([s.hit for s in answerable])) if answerable else 0.0,
        "chain_recall": float(np.mean([s.chain_recall for s in answerable])) if answerable else 0.0,
        "answer_threshold": answer_threshold,
        "f1": f1,
        "abstain_threshold": abstain_threshold,
        **rates,
        "by_source": _by_source(scores, questions, answer_threshold, abstain_threshold),
    }


def _by_source(scores: list[PathScore], questions: list[TrainingQuestion], answer_t: float, abstain_t: float) -> dict:
    out = {}
    for source in dict.fromkeys(q.source for q in questions):
        own = [s for s, q in zip(scores, questions, strict=True) if q.source == source]
        out[source] = {
            "n": len(own),
            "hits@1": float(np.mean([s.hit for s in own])),
            "f1": float(np.mean([s.f1(answer_t) for s in own])),
            "abstained": float(np.mean([s.support < abstain_t for s in own])),
        }
    return out


def fit_for_store(
    search: PathSearch,
    files: list[Path],
    *,
    from_kg: bool = False,
    seed: int = 0,
    holdout: float = 0.2,
    max_eval: int = 900,
    max_hops: int = 2,
    words: RelationWords | None = None,
) -> tuple[RelationPrior, FitReport]:
    """Fit the chain prior of the store `search` reads: on the question files, with questions generated from
    the KG's chains (of up to max_hops steps) when asked or when there are no files, and negatives always;
    the generated questions name relations by their words too when given (`relation_words.py`; words for a
    relation the KG lacks are a RelationWordsError when the words are strict)."""
    graph = kg_graph(search)
    questions = [q for path in files for q in read_training_questions(path)]
    topics = [m[1] for q in questions if (m := _BRACKETED.search(q.text))]
    types = step_type_nouns(graph, search.encoder, seed)
    words = words.restricted(graph.relations()) if words else None
    questions += generated_training_questions(
        graph,
        topics,
        from_kg=from_kg or not files,
        seed=seed,
        others=len(questions),
        max_hops=max_hops,
        types=types,
        words=words,
    )
    keep, abstain = abstention_rule(questions)
    return fit_chain_prior(
        search, graph, questions, holdout=holdout, seed=seed, max_eval=max_eval, keep=keep, abstain=abstain
    )


def abstention_rule(questions: list[TrainingQuestion]) -> tuple[float, float | None]:
    """keep and abstain for the abstention threshold (`path_metrics.best_abstain_threshold`): the rule of
    generated questions when they outnumber those read from files (a few of a user's own beside the KG's,
    with `--from-kg`), whose phrasings the held-out part would then hardly hold; the files' rule otherwise."""
    generated = sum(q.source == "generated" for q in questions)
    read = sum(q.source not in ("generated", "negative") for q in questions)
    return (KEEP_ANSWERED_GENERATED, ABSTAIN_GENERATED) if generated > read else (KEEP_ANSWERED, None)


def kg_graph(search: PathSearch) -> KGGraph:
    """The store's facts as adjacency sets (aliases left out: they are names, not edges)."""
    return KGGraph.of(search.store.payloads(), ALIAS_RELATIONS)
