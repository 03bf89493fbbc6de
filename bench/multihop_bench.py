"""Multi-hop benchmark on MetaQA 1/2/3-hop test (issue 13): path search, abstention, answers, HTTP.

    python -m bench.multihop_bench [--metaqa-dir ../shared/data/metaqa] [--data-dir var/bench]
                                   [--sample N] [--seed 0] [--parts retrieval,answers,http]
                                   [--model DIR|FILE.gguf|base] [--prior FILE] [--http-n 100] [--fanout-n 20]
    python -m bench.multihop_bench --write-absent-questions   # rewrites bench/data/absent_relation_questions.jsonl

Needs the MetaQA index (var/bench, collection "metaqa") and its fitted chain prior
(var/bench/metaqa.relation_prior.npz, fitted on dev only; `--prior` reads another file instead).
Questions are MetaQA's test questions, brackets stripped; `--sample N` takes N per hop in a seeded
order (a smaller sample is the start of a larger one), without it every question is used. Nothing
else may hold the index open meanwhile: Qdrant Edge opens a store in one process at a time.

- retrieval: in-process path search, k=5, the service's limits and thresholds; per hop the answer
  set's precision, recall and F1 (the set is what POST /v1/paths returns: `path_replies.to_reply`;
  an abstention is an empty set and scores 0 on each), path recall (a grounded chain reaches a gold
  answer), Hits@1 of the best path's end and of the set's first name, and the share abstained on;
  what the caps cut, and the questions of the widest fan-out. Beside them the ceiling of
  this KG: MetaQA's own chain (from qa_test_qtype.txt) executed from the topic, its reach, the F1
  of all it reaches and the Hits@1 of picking one of them (expected, over a uniform pick), with
  the path search's simple-path rule (`KGGraph.walk`) and without it (only the topic itself left
  out of the ends, as MetaQA's gold was made). Abstention: the answerable questions still answered
  against the unanswerable ones abstained on (the questions whose chain reaches no gold answer,
  and the hand-written questions about relations the KG lacks, bench/data/).
- answers: the generator's `answer` (in-process, the requests built by the answer router from the
  retriever's response; k=5, RAG-Token, constrained, 16 a batch): Hits@1 over all questions and
  over the graph-answerable ones; an abstention is a miss.
- http: both services on loopback, one request at a time: p50/p95 of POST /v1/answer per hop, then
  the questions with the widest fan-out (from the retrieval part), then each service's peak RSS.

Each part replaces its own entry of bench/results/multihop.json; the others are kept, so the parts
may run at different times (each carries its own provenance under "parts").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx
import numpy as np

from bench.provenance import stamp
from generator_service.dependencies import check_options
from generator_service.lm_loading import load_causal_lm, teacher_gguf_path
from generator_service.rag import RagGenerator, RagRequest
from generator_service.routers.answer import answerable, rag_request
from generator_service.schemas import GenerationOptions
from generator_service.settings import GeneratorSettings
from retriever_service.chain_labels import f1_score
from retriever_service.chains import Chain, Step
from retriever_service.encoder import Encoder
from retriever_service.entity_linking import ALIAS_RELATIONS
from retriever_service.kg_graph import KGGraph
from retriever_service.path_metrics import PathScore, score_result
from retriever_service.path_replies import path_limits, thresholds, to_reply
from retriever_service.path_search import PathLimits, PathSearchResult
from retriever_service.relation_prior import RelationPrior
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.launcher import ServiceProcess
from shared.metrics import Metrics
from shared.names import fold
from shared.qa_data import METAQA_DIR, Question, metaqa_split, read_questions
from shared.retriever_api import PathOptions, PathSearchResponse

RESULTS_FILE = Path("bench/results/multihop.json")
ABSENT_FILE = Path("bench/data/absent_relation_questions.jsonl")
HOPS = (1, 2, 3)
PARTS = ("retrieval", "answers", "http")
K = 5  # documents per question: the generator's default_k
SEARCH_BATCH = 32
ANSWER_BATCH = 16  # the generator service's batch_size
TARGET_ABSTAINED, TARGET_ANSWERED = 0.9, 0.98  # issue 13: unanswerable abstained on, answerable still answered
TARGET_P50_RATIO = 3.0  # issue 13: 3-hop p50 at most this times 1-hop p50
RETRIEVER_PORT, GENERATOR_PORT = 18811, 18810

# MetaQA's qtype words -> the KG relation; a step from a movie is forward, a step to a movie inverse.
QTYPE_RELATIONS = {
    "actor": "starred_actors",
    "director": "directed_by",
    "writer": "written_by",
    "genre": "has_genre",
    "language": "in_language",
    "tags": "has_tags",
    "tag": "has_tags",
    "year": "release_year",
}
PERSON_TYPES = frozenset({"actor", "director", "writer"})

# Held-out phrasings about relations the KG lacks: none is a form of the question generator
# (`question_generation.py`: "what is the R of X", "who are X's R", ...), whose negatives the prior was fitted on.
MOVIE_PHRASINGS = (
    "who produced {}",
    "what was the budget of {}",
    "who composed the score for {}",
    "where was {} filmed",
    "what awards did {} win",
    "how much money did {} make at the box office",
    "which studio made {}",
    "who was the cinematographer on {}",
    "how long does {} run",
    "who edited {}",
    "which company distributed {}",
    "is there a sequel to {}",
    "who designed the costumes for {}",
    "what songs are on the soundtrack of {}",
    "how many oscars was {} nominated for",
    "where does the story of {} take place",
    "who did the visual effects for {}",
    "what did critics say about {}",
    "who financed {}",
    "what camera was {} shot on",
)
PERSON_PHRASINGS = (
    "where was {} born",
    "when was {} born",
    "who is {} married to",
    "how tall is {}",
    "which school did {} go to",
    "how many children does {} have",
    "what country does {} come from",
    "when did {} die",
    "what awards has {} won",
    "who raised {}",
    "what instrument does {} play",
    "how old is {}",
)
PER_MOVIE_PHRASING, PER_PERSON_PHRASING = 7, 5  # 20 * 7 + 12 * 5 = 200 questions


# ---- pure: MetaQA's chains, walks, figures ----


def right_chain(qtype: str) -> Chain:
    """The relation chain a MetaQA question type asks for: 'movie_to_actor_to_movie' ->
    (starred_actors, starred_actors^-1)."""
    kinds = qtype.split("_to_")
    if len(kinds) < 2 or "movie" not in kinds:
        raise ValueError(f"not a MetaQA question type: {qtype!r}")
    steps = []
    for here, there in zip(kinds, kinds[1:], strict=False):
        if here == "movie":
            steps.append(Step(QTYPE_RELATIONS[there]))
        elif there == "movie":
            steps.append(Step(QTYPE_RELATIONS[here], True))
        else:
            raise ValueError(f"a MetaQA step starts or ends at a movie: {qtype!r}")
    return tuple(steps)


def walk_any(graph: KGGraph, start: set[str], chain: Chain) -> set[str]:
    """The ends of a chain walked without the simple-path rule (an entity may be revisited midway); only the
    start itself is left out of the ends, as MetaQA's gold answers leave out the topic."""
    frontier = set(start)
    for step in chain:
        frontier = graph.follow(frontier, step)
    return {e for e in frontier - start if graph.is_answer(e)}


def ceiling_row(reached: Iterable[str], gold: set[str]) -> dict:
    """One question's ceiling: does the right chain reach a gold answer, the F1 of returning all it reaches,
    and the Hits@1 of picking one of them (expected over a uniform pick: the share of them that are gold)."""
    found = {fold(e) for e in reached}
    hit = len(found & gold)
    return {"reach": hit > 0, "f1": f1_score(found, gold), "hits@1_pick_one": hit / len(found) if found else 0.0}


def answer_set_row(names: Iterable[str], gold: set[str]) -> dict:
    """Precision, recall and F1 of an answer set (names as returned) against folded gold answers; an empty set
    (an abstention) scores 0 on each."""
    found = {fold(n) for n in names}
    hit = len(found & gold)
    return {
        "precision": hit / len(found) if found else 0.0,
        "recall": hit / len(gold) if gold else 0.0,
        "f1": f1_score(found, gold),
    }


def retrieval_row(response: PathSearchResponse, score: PathScore) -> dict:
    """One question's retrieval figures, from what /v1/paths returns and the path search's own score; the answer
    set's first name (its most probable entity) is what the generator's answer compares with."""
    first = fold(response.answers[0].name) if response.answers else None
    return {
        **answer_set_row([a.name for a in response.answers], set(score.gold)),
        "path_recall": score.chain_recall,
        "hits@1": score.hit,
        "hits@1_abstain_as_miss": score.hit and not response.abstain,
        "first_answer_hits@1": first in score.gold,
        "abstained": response.abstain,
    }


def means(rows: Sequence[dict]) -> dict:
    """The mean of each numeric or boolean field over the rows, rounded to 4 places."""
    if not rows:
        return {}
    return {
        key: round(float(np.mean([float(r[key]) for r in rows])), 4)
        for key in rows[0]
        if isinstance(rows[0][key], (bool, int, float))
    }


def abstention_summary(answerable_abstained: Sequence[bool], unanswerable_abstained: Sequence[bool]) -> dict:
    """Share of answerable questions still answered and of unanswerable ones abstained on, against the targets."""
    answered = 1 - float(np.mean(answerable_abstained)) if answerable_abstained else None
    abstained = float(np.mean(unanswerable_abstained)) if unanswerable_abstained else None
    return {
        "answerable": len(answerable_abstained),
        "unanswerable": len(unanswerable_abstained),
        "answered": _round(answered),
        "abstained": _round(abstained),
        "answered_met": answered is not None and answered >= TARGET_ANSWERED,
        "abstained_met": abstained is not None and abstained >= TARGET_ABSTAINED,
    }


def percentiles(seconds: Sequence[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "n": len(ms),
    }


def fanout_entry(question: Question, result: PathSearchResult, hops: int) -> tuple[tuple[int, int, int], dict]:
    """How wide a search spread, as a sort key and as an entry: chain steps that hit the fact cap, chains cut to
    the path cap, paths grounded."""
    key = (result.cuts.steps_at_fact_limit, result.cuts.chains_at_path_limit, sum(len(c.paths) for c in result.chains))
    names = ("steps_at_fact_limit", "chains_at_path_limit", "grounded_paths")
    return key, {"question": question.stripped, "hops": hops, **dict(zip(names, key, strict=True))}


def widest(candidates: Iterable[tuple[tuple, dict]], n: int) -> list[dict]:
    """The n entries of the widest fan-out (key descending; the question breaks ties)."""
    return [entry for _, entry in sorted(candidates, key=lambda c: (tuple(-x for x in c[0]), c[1]["question"]))[:n]]


def seeded_order(questions: Sequence[Question], seed: int, n: int | None) -> list[Question]:
    """The first n questions of a seeded shuffle (all of them, shuffled, for None): samples are nested."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    return [questions[i] for i in order[:n]]


def absent_relation_questions(topics: Sequence[tuple[str, str]], seed: int) -> list[dict]:
    """Questions about relations the KG lacks, each phrasing on its own topics: (name, 'movie'|'person') pairs
    drawn with the seed, every topic used once."""
    rng = random.Random(seed)
    pools = {kind: sorted({name for name, k in topics if k == kind}) for kind in ("movie", "person")}
    for pool in pools.values():
        rng.shuffle(pool)
    out = []
    for kind, phrasings, each in (
        ("movie", MOVIE_PHRASINGS, PER_MOVIE_PHRASING),
        ("person", PERSON_PHRASINGS, PER_PERSON_PHRASING),
    ):
        if len(pools[kind]) < len(phrasings) * each:
            raise ValueError(f"{len(pools[kind])} {kind} topics, {len(phrasings) * each} needed")
        names = iter(pools[kind])
        out += [
            {"question": phrasing.format(next(names)), "answers": []} for phrasing in phrasings for _ in range(each)
        ]
    return out


def topic_kind(question: Question) -> str | None:
    """'movie' or 'person' for a question whose topic is one, from its MetaQA type's first word."""
    first = question.qtype.split("_to_", 1)[0]
    return "movie" if first == "movie" else "person" if first in PERSON_TYPES else None


def merge_part(existing: dict, part: str, measured: dict) -> dict:
    """The results with one part's entry replaced, the other parts' kept."""
    return {**existing, part: measured}


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


# ---- retrieval: in-process path search ----


def open_retriever(args: argparse.Namespace) -> tuple[RetrieverState, Path]:
    """The retriever's state over the MetaQA index, with the prior `--prior` names when given."""
    state = RetrieverState(
        settings=RetrieverSettings(data_dir=args.data_dir, collection="metaqa"),
        encoder=Encoder.load(),
        metrics=Metrics("bench"),
    )
    prior_path = args.prior or state.settings.relation_prior_path
    if args.prior:
        state.relations = RelationPrior.load(args.prior)
    if state.relations is None:
        raise SystemExit(f"no chain prior at {prior_path}: fit one on dev (kgrag-ingest fit-relations) or pass --prior")
    state.store()  # opened (and its entity names indexed) before any timing
    return state, prior_path


class Searcher:
    """PathSearch as POST /v1/paths runs it: the service's limits for k=5, its thresholds, its reply
    (`path_replies`); the search's own result is kept beside the reply (path recall and cuts read it)."""

    def __init__(self, state: RetrieverState) -> None:
        self.settings, self.search = state.settings, state.path_search()
        self.limits: PathLimits = path_limits(self.settings, PathOptions(k=K))
        self.answer_t, self.abstain_t = thresholds(self.settings, self.search.prior)

    def __call__(self, texts: list[str]) -> list[tuple[PathSearchResult, PathSearchResponse]]:
        results = self.search.search(texts, K, self.limits)
        return [
            (r, to_reply(r, K, self.limits.max_hops, self.settings.tau, self.answer_t, self.abstain_t)) for r in results
        ]

    def config(self, prior_path: Path) -> dict:
        prior = self.search.prior
        return {
            "k": K,
            "limits": vars(self.limits),
            "tau": self.settings.tau,
            "answer_threshold": self.answer_t,
            "abstain_threshold": self.abstain_t,
            "prior": {
                "path": str(prior_path),
                "sha256": _sha256(prior_path),
                "chains": len(prior.keys),
                "weight": prior.weight,
                "temperature": prior.temperature,
                "mention_penalty": prior.mention_penalty,
            },
        }


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def search_all(searcher: Searcher, questions: Sequence[Question], label: str) -> tuple[list, float]:
    """(result, response) of every question (brackets stripped), in batches; the seconds spent."""
    out, start = [], time.perf_counter()
    for i in range(0, len(questions), SEARCH_BATCH):
        out += searcher([q.stripped for q in questions[i : i + SEARCH_BATCH]])
        if (i // SEARCH_BATCH) % 16 == 15:
            print(
                f"  {label}: {len(out)}/{len(questions)} "
                f"({(time.perf_counter() - start) / len(out) * 1000:.0f} ms each)",
                flush=True,
            )
    return out, time.perf_counter() - start


def kg_graph(state: RetrieverState) -> KGGraph:
    return KGGraph.of(state.store().payloads(), ALIAS_RELATIONS)


def ceilings(graph: KGGraph, questions: Sequence[Question]) -> dict[str, list[dict]]:
    """Each question's ceiling row with the simple-path rule and without it."""
    rows: dict[str, list[dict]] = {"simple_paths": [], "any_walk": []}
    for q in questions:
        chain, gold, start = right_chain(q.qtype), {fold(a) for a in q.answers}, {q.topic}
        rows["simple_paths"].append(ceiling_row(graph.walk(start, chain), gold))
        rows["any_walk"].append(ceiling_row(walk_any(graph, start, chain), gold))
    return rows


def retrieval_hop(searcher: Searcher, graph: KGGraph, questions: list[Question], hops: int) -> tuple[dict, list, tuple]:
    """One hop count's figures, its (fan-out key, question) candidates, and (each verdict, each graph-answerable)."""
    found, seconds = search_all(searcher, questions, f"{hops}-hop")
    rows = [
        retrieval_row(response, score_result(result, q.answers))
        for q, (result, response) in zip(questions, found, strict=True)
    ]
    ceiling = ceilings(graph, questions)
    answerable = [row["reach"] for row in ceiling["simple_paths"]]
    verdicts = [response.abstain for _, response in found]
    figures = {
        "questions": len(questions),
        **means(rows),
        "reasons": dict(Counter(r.reason for _, r in found if r.reason)),
        "cuts": _cut_figures([result for result, _ in found]),
        "ms_per_question": round(1000 * seconds / len(questions), 1),
        "ceiling": {name: {**means(r), "unanswerable": sum(not x["reach"] for x in r)} for name, r in ceiling.items()},
        "abstention": {
            **abstention_summary(
                [v for v, a in zip(verdicts, answerable, strict=True) if a],
                [v for v, a in zip(verdicts, answerable, strict=True) if not a],
            ),
            # answered by another chain than MetaQA's, yet with a gold answer in the set
            "unanswerable_answered_with_gold": sum(
                not a and row["recall"] > 0 for row, a in zip(rows, answerable, strict=True)
            ),
        },
    }
    fanout = [fanout_entry(q, result, hops) for q, (result, _) in zip(questions, found, strict=True)]
    return figures, fanout, (verdicts, answerable)


def _cut_figures(results: Sequence[PathSearchResult]) -> dict:
    cuts = [vars(r.cuts) for r in results]
    return {
        name: {
            "mean": round(float(np.mean([c[name] for c in cuts])), 3),
            "max": max(c[name] for c in cuts),
            "questions": sum(c[name] > 0 for c in cuts),
        }
        for name in cuts[0]
    }


def retrieval_part(args: argparse.Namespace, samples: dict[int, list[Question]]) -> dict:
    state, prior_path = open_retriever(args)
    searcher, graph = Searcher(state), kg_graph(state)
    out = {"config": {**searcher.config(prior_path), "sample": args.sample, "seed": args.seed}, "per_hop": {}}
    candidates, answerable_verdicts, unanswerable_verdicts = [], [], []
    for hops, questions in samples.items():
        figures, fanout, (verdicts, answerable) = retrieval_hop(searcher, graph, questions, hops)
        out["per_hop"][str(hops)] = figures
        candidates += fanout
        answerable_verdicts += [v for v, a in zip(verdicts, answerable, strict=True) if a]
        unanswerable_verdicts += [v for v, a in zip(verdicts, answerable, strict=True) if not a]
        print(f"{hops}-hop: {json.dumps({k: v for k, v in figures.items() if k != 'cuts'})}", flush=True)
    absent = read_questions(ABSENT_FILE)
    found, _ = search_all(searcher, absent, "absent relations")
    absent_verdicts = [response.abstain for _, response in found]
    out["absent_relation"] = {
        "questions": len(absent),
        "abstained": round(float(np.mean(absent_verdicts)), 4),
        "reasons": dict(Counter(r.reason or "answered" for _, r in found)),
    }
    out["abstention"] = {
        "metaqa_unanswerable": abstention_summary(answerable_verdicts, unanswerable_verdicts),
        "all": abstention_summary(answerable_verdicts, unanswerable_verdicts + absent_verdicts),
    }
    out["fanout"] = widest(candidates, args.fanout_n)
    state.close()
    return out


# ---- answers: the generator in-process ----


def load_generator(model: str | None) -> RagGenerator:
    source = str(teacher_gguf_path()) if model == "base" else model
    return RagGenerator(load_causal_lm(source, cache_dir=Path("var/cache/lm")))


def answer_requests(responses: list[PathSearchResponse]) -> dict[int, RagRequest]:
    """The generator's requests, as POST /v1/answer builds them from the retriever's replies (after their trip
    through JSON), by position; the questions the retriever abstains on get none."""
    options = GenerationOptions(k=K, mode="token", constrain=True)
    _, max_new_tokens = check_options(GeneratorSettings(), options)
    received = [PathSearchResponse.model_validate_json(r.model_dump_json()) for r in responses]
    return {i: rag_request(r, options, max_new_tokens) for i, r in enumerate(received) if answerable(r)}


def answer_hop(searcher: Searcher, generator: RagGenerator, questions: list[Question], label: str) -> tuple[list, dict]:
    """The generator's answer to each question (None when the retriever abstains) and the seconds spent."""
    answers: list[str | None] = []
    seconds = {"search": 0.0, "generate": 0.0}
    for i in range(0, len(questions), ANSWER_BATCH):
        start = time.perf_counter()
        found = searcher([q.stripped for q in questions[i : i + ANSWER_BATCH]])
        seconds["search"] += time.perf_counter() - start
        requests = answer_requests([response for _, response in found])
        start = time.perf_counter()
        generated = dict(zip(requests, generator.generate(list(requests.values())), strict=True))
        seconds["generate"] += time.perf_counter() - start
        answers += [generated[j].answer if j in generated else None for j in range(len(found))]
        print(f"  {label}: {len(answers)}/{len(questions)}", flush=True)
    return answers, seconds


def answer_figures(
    answers: Sequence[str | None], questions: Sequence[Question], answerable: Sequence[bool], seconds: dict
) -> dict:
    """Hits@1 of the generated answers (a missing answer is a miss), over all and over the graph-answerable."""
    hits = [a is not None and fold(a) in {fold(g) for g in q.answers} for a, q in zip(answers, questions, strict=True)]
    kept = [h for h, a in zip(hits, answerable, strict=True) if a]
    answered = sum(a is not None for a in answers)
    return {
        "questions": len(questions),
        "hits@1": _round(float(np.mean(hits))),
        "answerable": len(kept),
        "hits@1_answerable": _round(float(np.mean(kept))) if kept else None,
        "abstained": _round(1 - answered / len(questions)),
        "ms_per_question": round(1000 * (seconds["search"] + seconds["generate"]) / len(questions), 1),
        "generate_ms_per_answer": round(1000 * seconds["generate"] / answered, 1) if answered else None,
    }


def answers_part(args: argparse.Namespace, samples: dict[int, list[Question]]) -> dict:
    state, prior_path = open_retriever(args)
    searcher, graph = Searcher(state), kg_graph(state)
    generator = load_generator(args.model)
    out = {
        "config": {
            **searcher.config(prior_path),
            "model": generator.name,
            "mode": "token",
            "constrain": True,
            "batch": ANSWER_BATCH,
            "sample": args.sample,
            "seed": args.seed,
        },
        "per_hop": {},
    }
    for hops, questions in samples.items():
        answers, seconds = answer_hop(searcher, generator, questions, f"{hops}-hop answers")
        answerable = [row["reach"] for row in ceilings(graph, questions)["simple_paths"]]
        out["per_hop"][str(hops)] = row = answer_figures(answers, questions, answerable, seconds)
        print(f"{hops}-hop answers: {json.dumps(row)}", flush=True)
    state.close()
    return out


# ---- http: both services on loopback ----


def service_data_dir(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The retriever service's data directory: --data-dir, or with --prior a temporary one that links the index
    and holds a copy of that prior (the service reads the prior beside its collection). (dir, temp to remove)."""
    if args.prior is None:
        return args.data_dir, None
    temp = Path(tempfile.mkdtemp(prefix="multihop-"))
    (temp / "metaqa").symlink_to((args.data_dir / "metaqa").resolve(), target_is_directory=True)
    shutil.copyfile(args.prior, temp / "metaqa.relation_prior.npz")
    return temp, temp


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def ask_each(client: httpx.Client, questions: Sequence[Question | str]) -> tuple[list[float], list[str | None], int]:
    """POST /v1/answer for each question, one at a time: latencies, answers, errors."""
    seconds, answers, errors = [], [], 0
    for q in questions:
        text = q.stripped if isinstance(q, Question) else q
        start = time.perf_counter()
        r = client.post("/v1/answer", json={"question": text, "k": K})
        seconds.append(time.perf_counter() - start)
        errors += r.status_code != 200
        answers.append(r.json().get("answer") if r.status_code == 200 else None)
    return seconds, answers, errors


def fanout_questions(args: argparse.Namespace, samples: dict[int, list[Question]], stored: dict) -> list[dict]:
    """The widest fan-out questions the retrieval part found, else found now by searching the samples."""
    if stored.get("fanout"):
        return stored["fanout"][: args.fanout_n]
    state, _ = open_retriever(args)
    searcher, candidates = Searcher(state), []
    for hops, questions in samples.items():
        found, _ = search_all(searcher, questions, f"{hops}-hop fan-out")
        candidates += [fanout_entry(q, result, hops) for q, (result, _) in zip(questions, found, strict=True)]
    state.close()
    return widest(candidates, args.fanout_n)


def serve_and_measure(args: argparse.Namespace, samples: dict[int, list[Question]], fanout: list[dict]) -> dict:
    data_dir, temp = service_data_dir(args)
    env = {"KGRAG_RETRIEVER_DATA_DIR": str(data_dir), "KGRAG_RETRIEVER_COLLECTION": "metaqa"}
    retriever = ServiceProcess("retriever_service", RETRIEVER_PORT, env, Path("var/log/bench_multihop_retriever.log"))
    model = {"KGRAG_GENERATOR_MODEL": _model_source(args.model)} if args.model else {}
    generator = ServiceProcess(
        "generator_service",
        GENERATOR_PORT,
        {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url, **model},
        Path("var/log/bench_multihop_generator.log"),
    )
    try:
        retriever.start().wait_ready()
        generator.start().wait_ready(timeout_s=300)
        return measure(
            generator, {"retriever": retriever.proc.pid, "generator": generator.proc.pid}, samples, fanout, args.http_n
        )
    finally:
        generator.stop()
        retriever.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def measure(
    generator: ServiceProcess, pids: dict[str, int], samples: dict[int, list[Question]], fanout: list[dict], n: int
) -> dict:
    """Latency per hop count (after a short warm-up), then the fan-out questions, then both services' peak RSS."""
    out = {"model": httpx.get(f"{generator.url}/readyz", timeout=10).json().get("model"), "latency": {}}
    with httpx.Client(base_url=generator.url, timeout=300) as client:
        first = samples[min(samples)]
        ask_each(client, first[n : n + 3] or first[:3])  # warm-up, not counted: questions after the timed ones
        for hops, questions in samples.items():
            seconds, answers, errors = ask_each(client, questions[:n])
            hits = [
                a is not None and fold(a) in {fold(g) for g in q.answers}
                for a, q in zip(answers, questions[:n], strict=True)
            ]
            out["latency"][str(hops)] = row = {
                **percentiles(seconds),
                "errors": errors,
                "hits@1": _round(float(np.mean(hits))),
            }
            print(f"{hops}-hop over HTTP: {row}", flush=True)
        out["peak_rss_mb_before_fanout"] = {name: peak_rss_mb(pid) for name, pid in pids.items()}
        seconds, _, errors = ask_each(client, [f["question"] for f in fanout])
    out["fanout"] = (
        {"questions": len(fanout), "errors": errors, **percentiles(seconds), "max_ms": round(1000 * max(seconds), 1)}
        if fanout
        else {"questions": 0}
    )
    out["peak_rss_mb"] = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    if "1" in out["latency"] and "3" in out["latency"]:
        ratio = out["latency"]["3"]["p50_ms"] / out["latency"]["1"]["p50_ms"]
        out["p50_ratio_3hop_1hop"] = {
            "ratio": round(ratio, 2),
            "target": TARGET_P50_RATIO,
            "met": ratio <= TARGET_P50_RATIO,
        }
    return out


def http_part(args: argparse.Namespace, samples: dict[int, list[Question]], stored: dict) -> dict:
    fanout = fanout_questions(args, samples, stored.get("retrieval", {}))
    measured = serve_and_measure(args, samples, fanout)
    return {
        "config": {
            "k": K,
            "per_hop": args.http_n,
            "sample": args.sample,
            "seed": args.seed,
            "fanout_from": "retrieval part" if stored.get("retrieval", {}).get("fanout") else "searched now",
        },
        **measured,
    }


def _model_source(model: str | None) -> str | None:
    return str(teacher_gguf_path()) if model == "base" else model


# ---- tables, files, main ----


def print_tables(result: dict) -> None:
    if "retrieval" in result:
        _print_retrieval(result["retrieval"])
    if "answers" in result:
        a = result["answers"]
        print(f"\nanswers ({a['config']['model']}, k={K}, RAG-Token, constrained)")
        print(f"{'hops':>4} {'n':>6} {'Hits@1':>7} {'answerable':>10} {'Hits@1 ans.':>11} {'abstained':>9} {'ms/q':>7}")
        for hops, r in a["per_hop"].items():
            print(
                f"{hops:>4} {r['questions']:>6} {r['hits@1']:>7.3f} {r['answerable']:>10} "
                f"{_fmt(r['hits@1_answerable']):>11} {r['abstained']:>9.3f} {r['ms_per_question']:>7}"
            )
    if "http" in result:
        h = result["http"]
        print(f"\nHTTP, one request at a time ({h['model']})")
        for hops, r in h["latency"].items():
            print(
                f"{hops}-hop: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, n {r['n']}, errors {r['errors']}, "
                f"Hits@1 {r['hits@1']}"
            )
        if "p50_ratio_3hop_1hop" in h:
            print(f"3-hop / 1-hop p50: {h['p50_ratio_3hop_1hop']}")
        print(f"widest fan-out: {h['fanout']}; peak RSS MiB: {h['peak_rss_mb']}")


def _print_retrieval(r: dict) -> None:
    print(
        f"\nretrieval (k={K}; answer threshold {r['config']['answer_threshold']:.3f}, "
        f"abstain threshold {r['config']['abstain_threshold']:.3f}); Hits@1: the best path's end, 1st: the answer "
        f"set's first name; ceilings: MetaQA's chain executed, Hits@1 of picking one of its ends"
    )
    print(
        f"{'hops':>4} {'n':>6} {'P':>6} {'R':>6} {'F1':>6} {'path R':>6} {'Hits@1':>6} {'1st':>6} {'abst.':>6} | "
        f"ceiling simple: {'reach':>5} {'F1':>6} {'Hits@1':>6} | "
        f"any walk: {'reach':>5} {'F1':>6} {'Hits@1':>6} {'ms/q':>6}"
    )
    for hops, h in r["per_hop"].items():
        s, a = h["ceiling"]["simple_paths"], h["ceiling"]["any_walk"]
        print(
            f"{hops:>4} {h['questions']:>6} {h['precision']:>6.3f} {h['recall']:>6.3f} {h['f1']:>6.3f} "
            f"{h['path_recall']:>6.3f} {h['hits@1']:>6.3f} {_fmt(h.get('first_answer_hits@1')):>6} "
            f"{h['abstained']:>6.3f} | "
            f"{'':15} {s['reach']:>5.3f} "
            f"{s['f1']:>6.3f} {s['hits@1_pick_one']:>6.3f} | {'':9} {a['reach']:>5.3f} {a['f1']:>6.3f} "
            f"{a['hits@1_pick_one']:>6.3f} {h['ms_per_question']:>6}"
        )
    for name, row in r["abstention"].items():
        print(
            f"abstention ({name}): answerable answered {_fmt(row['answered'])} of {row['answerable']} "
            f"(target {TARGET_ANSWERED}), unanswerable abstained on {_fmt(row['abstained'])} of {row['unanswerable']} "
            f"(target {TARGET_ABSTAINED})"
        )
    print(f"absent-relation questions: {r['absent_relation']}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def load_samples(args: argparse.Namespace) -> dict[int, list[Question]]:
    return {
        hops: seeded_order(metaqa_split(hops, "test", args.metaqa_dir), args.seed, args.sample) for hops in args.hops
    }


def write_absent_questions(args: argparse.Namespace) -> None:
    """bench/data/absent_relation_questions.jsonl from the 1-hop test questions' topics (every one is in the KG)."""
    test = metaqa_split(1, "test", args.metaqa_dir)
    topics = [(q.topic, kind) for q in test if q.topic and (kind := topic_kind(q))]
    rows = absent_relation_questions(topics, args.seed)
    ABSENT_FILE.parent.mkdir(parents=True, exist_ok=True)
    ABSENT_FILE.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} questions to {ABSENT_FILE}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.multihop_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--metaqa-dir", type=Path, default=METAQA_DIR)
    p.add_argument("--data-dir", type=Path, default=Path("var/bench"), help="holds the index 'metaqa' and its prior")
    p.add_argument("--prior", type=Path, help="chain prior file to use instead of the one beside the index")
    p.add_argument("--sample", type=int, help="questions per hop count, in a seeded order (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hops", type=lambda s: [int(h) for h in s.split(",")], default=list(HOPS), help="e.g. 1,3")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of %(default)s")
    p.add_argument(
        "--model",
        help='generator model: a directory, a .gguf or "base" (default: the service\'s, models/student when it exists)',
    )
    p.add_argument("--http-n", type=int, default=100, help="questions per hop count timed over HTTP")
    p.add_argument("--fanout-n", type=int, default=20, help="widest fan-out questions served before reading peak RSS")
    p.add_argument("--results", type=Path, default=RESULTS_FILE, help="the JSON the parts are merged into")
    p.add_argument("--write-absent-questions", action="store_true", help=f"rewrite {ABSENT_FILE} and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.write_absent_questions:
        write_absent_questions(args)
        return 0
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    samples = load_samples(args)
    result = json.loads(args.results.read_text()) if args.results.exists() else {}
    runners = {
        "retrieval": lambda: retrieval_part(args, samples),
        "answers": lambda: answers_part(args, samples),
        "http": lambda: http_part(args, samples, result),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for part in parts:  # each part written when done: a later one failing keeps it
        start = time.perf_counter()
        measured = runners[part]()
        measured["seconds"] = round(time.perf_counter() - start, 1)
        result = stamp(merge_part(result, part, measured), [part])
        args.results.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
