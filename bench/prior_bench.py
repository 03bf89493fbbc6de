"""The chain prior fitted from the KG itself (issue 14), measured on the demo KG with hand-written questions.

    python -m bench.prior_bench [--questions bench/data/demo_questions.jsonl] [--no-one-hop] [--no-own]
                                [--words examples/demo_relation_words.json | --no-words] [--seed 0]
                                [--save-priors DIR]

The demo KG (`retriever_service.demo_kg`, ~250 countries) is loaded into a fresh store in a temporary
directory, and the held-out questions of bench/data/demo_questions.jsonl (written by hand, in phrasings
the question generator does not use; never read by the fitting of a prior that answers them) are answered
through `search_replies`, as POST /v1/paths answers them (k=5, the service's default limits and
thresholds), with these priors:

- uniform: no fitted prior (`RelationPrior.uniform` over the KG's relations, every one-step chain equally
  likely: cosine decides), the behaviour before the prior;
- from_kg: the prior `kgrag-ingest demo` fits, from questions generated from the KG's own chains of up to
  two steps and negatives (`fit_for_store(search, [], from_kg=True)`);
- one_hop: the same fitting on generated one-step questions only (`--no-one-hop` leaves it out);
- with_words: the from_kg fitting with other words for the relations (`fit-relations --relation-words`,
  examples/demo_relation_words.json: written for this KG after its misses here had been read, so its
  column is no held-out figure: it shows what naming the relations' words gives; `--no-words` leaves it out);
- with_own: the from_kg fitting plus half the answerable hand-written questions as a user's own question
  file (`fit-relations mine.jsonl --from-kg`), in two folds: each half is answered by the prior fitted with
  the other half, so no question is answered by a prior that saw it (`--no-own` leaves it out);
- each fitted prior again with abstention off (`<name>_no_abstention`: the abstain threshold set to 0, as
  KGRAG_RETRIEVER_ABSTAIN_THRESHOLD=0 would), which tells the answers the threshold withheld from the
  questions whose chain was misread.

Per prior: Hits@1 over the answerable questions (the reply's first answer folds to a gold answer,
`shared.names.fold`; an abstention is a miss), per kind; the answer set's precision, recall and F1 per
kind (an abstention is an empty set); the share abstained on among the questions about relations the KG
lacks (kind "absent") and among the answerable ones; the share whose top grounded chain is the one the
question was written for (its `chain`). Prints a table and writes bench/results/prior.json (provenance,
each fit's report and seconds, per-question rows with the prior's three most likely keys and P(<none>)).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.provenance import stamp
from retriever_service.chains import NONE_KEY
from retriever_service.demo_kg import demo_triples
from retriever_service.encoder import Encoder
from retriever_service.entity_linking import mask_mention
from retriever_service.ingest import ingest_triples
from retriever_service.path_replies import search_replies, thresholds
from retriever_service.path_search import PathSearch
from retriever_service.prior_fitting import fit_for_store
from retriever_service.relation_prior import RelationPrior
from retriever_service.relation_words import RelationWords, read_relation_words
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.metrics import Metrics
from shared.names import fold
from shared.retriever_api import PathOptions, PathSearchResponse

QUESTIONS = Path("bench/data/demo_questions.jsonl")
RESULTS = Path("bench/results/prior.json")
WORDS = Path("examples/demo_relation_words.json")
K = 5
KINDS = ("one-hop", "list", "chain", "absent")
ANSWERABLE = ("one-hop", "list", "chain")


def read_questions(path: Path) -> list[dict]:
    """The held-out rows {question, answers, kind} (and the `topic` and `chain` they were written for)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if row["kind"] not in KINDS or (row["kind"] == "absent") != (not row["answers"]):
            raise SystemExit(f"{path}: bad row {row}")
    return rows


# ---- scoring ----


def score_row(question: dict, reply: PathSearchResponse) -> dict:
    """One question's reply against its gold answers."""
    gold = {fold(a) for a in question["answers"]}
    given = [a.name for a in reply.answers]
    found = {fold(a) for a in given}
    right = len(found & gold)
    precision = right / len(found) if found else 0.0
    recall = right / len(gold) if gold else 0.0
    top = reply.chains[0].chain if reply.chains else None
    return {
        "question": question["question"],
        "kind": question["kind"],
        "gold": question["answers"],
        "answers": given[:20],
        "answers_total": len(given),
        "abstained": reply.abstain,
        "reason": reply.reason,
        "hit": bool(given) and not reply.abstain and fold(given[0]) in gold,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if right else 0.0,
        "asked_chain": question.get("chain"),
        "top_chain": top,
        "best_chain": reply.best_chain,
        "chain_right": _same_chain(top, question.get("chain")),
        "support": round(reply.support, 4),
        "linked": [e.mention for e in reply.linked],
    }


def _same_chain(found: str | None, asked: str | None) -> bool | None:
    """Whether the reply's top grounded chain is the one the question was written for; `borders` is symmetric
    in the demo KG, so either direction of it counts."""
    if asked is None or asked == NONE_KEY:
        return None
    if found is None:
        return False
    undirected = lambda key: key.replace("borders^-1", "borders")  # noqa: E731
    return undirected(found) == undirected(asked)


def summary(rows: list[dict]) -> dict:
    """Hits@1 over the answerable questions and per kind, the answer set's P/R/F1 per kind, abstention shares."""
    answerable = [r for r in rows if r["kind"] in ANSWERABLE]
    absent = [r for r in rows if r["kind"] == "absent"]
    out = {
        "questions": len(rows),
        "answerable": len(answerable),
        "absent": len(absent),
        "hits@1": _mean(r["hit"] for r in answerable),
        "abstained_answerable": _mean(r["abstained"] for r in answerable),
        "abstained_absent": _mean(r["abstained"] for r in absent),
        "kinds": {},
    }
    for kind in KINDS:
        own = [r for r in rows if r["kind"] == kind]
        if kind == "absent":
            out["kinds"][kind] = {
                "n": len(own),
                "abstained": _mean(r["abstained"] for r in own),
                "answered_empty_or_abstained": _mean(r["abstained"] or not r["answers"] for r in own),
            }
            continue
        out["kinds"][kind] = {
            "n": len(own),
            "hits@1": _mean(r["hit"] for r in own),
            **{m: _mean(r[m] for r in own) for m in ("precision", "recall", "f1")},
            "abstained": _mean(r["abstained"] for r in own),
            "chain_right": _mean(bool(r["chain_right"]) for r in own),
        }
    return out


def _mean(values) -> float:
    values = list(values)
    return round(float(np.mean(values)), 4) if values else 0.0


# ---- the priors ----


def run_prior(
    name: str,
    state: RetrieverState,
    questions: list[dict],
    seed: int,
    save_dir: Path | None = None,
    words: RelationWords | None = None,
) -> dict[str, dict]:
    """Set the prior up (fitting it when asked), answer every question, score the replies. A fitted prior is
    also scored with abstention turned off (the abstain threshold set to 0, as KGRAG_RETRIEVER_ABSTAIN_THRESHOLD
    would): "<name>_no_abstention", which tells the answers the threshold withheld from those ranked wrong.
    words: the relations' other words, for "with_words"."""
    search = state.path_search()
    fit: dict | None = None
    start = time.perf_counter()
    if name == "uniform":
        search.prior = RelationPrior.uniform(state.entities.relations, state.encoder.dim)
    else:
        hops = 1 if name == "one_hop" else 2
        used = words if name == "with_words" else None
        prior, report = fit_for_store(search, [], from_kg=True, seed=seed, max_hops=hops, words=used)
        search.prior = prior
        fit = {**dataclasses.asdict(report), "total_seconds": round(time.perf_counter() - start, 1)}
        print(
            f"  {name}: fitted in {fit['total_seconds']} s, {report.keys} keys, chosen {report.chosen}",
            file=sys.stderr,
            flush=True,
        )
        if save_dir:
            prior.save(save_dir / f"demo.{name}.relation_prior.npz")
    out = {name: {**answer_all(search, state.settings, questions), "fit": fit}}
    if fit:
        no_abstention = state.settings.model_copy(update={"abstain_threshold": 0.0})
        out[f"{name}_no_abstention"] = {**answer_all(search, no_abstention, questions), "fit": None}
    return out


def run_with_own(state: RetrieverState, questions: list[dict], seed: int) -> dict[str, dict]:
    """The prior fitted on the KG's own questions and on half the hand-written answerable ones, as a user adds a
    few questions in their own words (`fit-relations mine.jsonl --from-kg`): two folds, each half answered by
    the prior fitted on the other, so that no question is answered by a prior that saw it. "with_own" and
    "with_own_no_abstention", scored as the others; their fit is each fold's."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    halves = [sorted(order[::2]), sorted(order[1::2])]
    search = state.path_search()
    settings = {
        "with_own": state.settings,
        "with_own_no_abstention": state.settings.model_copy(update={"abstain_threshold": 0.0}),
    }
    rows: dict[str, list] = {name: [None] * len(questions) for name in settings}
    folds: dict[str, list] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for part, (fitted_on, asked) in enumerate([halves, halves[::-1]]):
            own = Path(tmp) / f"own_{part}.jsonl"
            own.write_text("".join(_own_line(questions[i]) for i in fitted_on), encoding="utf-8")
            start = time.perf_counter()
            prior, report = fit_for_store(search, [own], from_kg=True, seed=seed)
            search.prior = prior
            fit = {**dataclasses.asdict(report), "total_seconds": round(time.perf_counter() - start, 1)}
            print(f"  with_own, fold {part}: fitted in {fit['total_seconds']} s", file=sys.stderr, flush=True)
            for name, used in settings.items():
                answered = answer_all(search, used, [questions[i] for i in asked])
                for i, row in zip(asked, answered["rows"], strict=True):
                    rows[name][i] = row
                folds[name].append({"prior": answered["prior"], "fit": fit if name == "with_own" else None})
    return {
        name: {"folds": folds[name], "summary": summary(rows[name]), "rows": rows[name], "fit": None} for name in rows
    }


def _own_line(question: dict) -> str:
    """A hand-written answerable question as a user's training line, its topic [bracketed]; "" for the others."""
    if question["kind"] not in ANSWERABLE:
        return ""
    text, topic = question["question"], question.get("topic", "")
    text = text.replace(topic, f"[{topic}]", 1) if topic and topic in text else text
    return json.dumps({"question": text, "answers": question["answers"]}, ensure_ascii=False) + "\n"


def answer_all(search: PathSearch, settings: RetrieverSettings, questions: list[dict]) -> dict:
    """Every question through search_replies (k=5), scored; with the prior's reading of each question."""
    prior = search.prior
    start = time.perf_counter()
    replies = []
    for i in range(0, len(questions), 16):
        replies += search_replies(search, settings, [q["question"] for q in questions[i : i + 16]], PathOptions(k=K))
    seconds = time.perf_counter() - start
    rows = [
        {**score_row(q, r), "prior_top": prior_top(search, q["question"])}
        for q, r in zip(questions, replies, strict=True)
    ]
    return {
        "prior": {
            "keys": len(prior.keys),
            "weight": prior.weight,
            "temperature": prior.temperature,
            "mention_penalty": prior.mention_penalty,
            "answer_threshold": prior.answer_threshold,
            "abstain_threshold": prior.abstain_threshold,
            "thresholds_used": dict(zip(("answer", "abstain"), thresholds(settings, prior), strict=True)),
        },
        "search_seconds": round(seconds, 1),
        "summary": summary(rows),
        "rows": rows,
    }


def prior_top(search: PathSearch, question: str, n: int = 3) -> dict:
    """The prior's n most likely keys (and <none>'s probability) for the question, its first linked mention
    masked, as the path search reads it."""
    linked = search.entities.link(question)
    if not linked:
        return {}
    [row] = search.prior.log_probs(search.encoder.encode([mask_mention(question, linked[0])]))
    best = np.argsort(-row)[:n]
    none = search.prior.column(NONE_KEY)
    top = [[search.prior.keys[i], round(float(np.exp(row[i])), 4)] for i in best]
    return {
        "mention": linked[0].mention,
        "top": top,
        "none": None if none is None else round(float(np.exp(row[none])), 4),
    }


# ---- output ----


def print_table(result: dict) -> None:
    names = list(result["priors"])
    width = max(15, *(len(n.replace("_no_abstention", " -abst")) + 2 for n in names))
    print("\n" + f"{'':<34}" + "".join(f"{n.replace('_no_abstention', ' -abst'):>{width}}" for n in names))

    def line(label: str, get) -> None:
        cells = []
        for n in names:
            value = get(result["priors"][n]["summary"])
            cells.append(f"{value:>{width}.3f}" if isinstance(value, float) else f"{value!s:>{width}}")
        print(f"{label:<34}" + "".join(cells))

    line("Hits@1 (answerable)", lambda s: s["hits@1"])
    for kind in ANSWERABLE:
        n = result["priors"][names[0]]["summary"]["kinds"][kind]["n"]
        line(f"  Hits@1 {kind} ({n})", lambda s, k=kind: s["kinds"][k]["hits@1"])
    for kind in ANSWERABLE:
        for metric in ("precision", "recall", "f1"):
            line(f"  {metric} {kind}", lambda s, k=kind, m=metric: s["kinds"][k][m])
    for kind in ANSWERABLE:
        line(f"  top chain as asked, {kind}", lambda s, k=kind: s["kinds"][k]["chain_right"])
    n = result["priors"][names[0]]["summary"]["absent"]
    line(f"abstained, absent ({n})", lambda s: s["abstained_absent"])
    line("abstained, answerable", lambda s: s["abstained_answerable"])
    for i, part in enumerate(result["priors"].get("with_own", {}).get("folds", [])):
        print(
            f"fit with_own, fold {i}: {part['fit']['total_seconds']} s, questions {part['fit']['questions']}, "
            f"abstain threshold {part['prior']['abstain_threshold']:.3f}"
        )
    for n_ in names:
        fit = result["priors"][n_]["fit"]
        if fit:
            print(
                f"fit {n_}: {fit['total_seconds']} s ({fit['seconds']}), questions {fit['questions']}, "
                f"chosen {fit['chosen']}"
            )
    for name in ("from_kg", "with_words"):
        if name in result["priors"]:
            print_misses(name, result["priors"][name]["rows"])


def print_misses(name: str, rows: list[dict]) -> None:
    print(f"\nmisses of the fitted prior ({name}):")
    for row in rows:
        wrong = (not row["hit"]) if row["kind"] != "absent" else (not row["abstained"])
        if wrong:
            print(
                f"  [{row['kind']}] {row['question']} -> {row['answers'][:3]} abstained={row['abstained']} "
                f"top={row['top_chain']} best={row['best_chain']} asked={row['asked_chain']} "
                f"prior={row['prior_top'].get('top', [[None]])[0]} none={row['prior_top'].get('none')}"
            )


def to_json(result: dict) -> str:
    """The result, indented, with each per-question row on one line (the file stays readable and small)."""
    rows: list[str] = []

    def marked(value):
        if isinstance(value, dict):
            return {k: ([mark(r) for r in v] if k == "rows" else marked(v)) for k, v in value.items()}
        return [marked(v) for v in value] if isinstance(value, list) else value

    def mark(row: dict) -> str:
        rows.append(json.dumps(row, ensure_ascii=False, default=float))
        return f"\0row{len(rows) - 1}\0"

    text = json.dumps(marked(result), indent=2, ensure_ascii=False, default=float)
    for i, row in enumerate(rows):
        text = text.replace(json.dumps(f"\0row{i}\0"), row, 1)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=Path, default=QUESTIONS)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--no-one-hop", action="store_true", help="leave out the prior fitted on one-step questions only")
    p.add_argument(
        "--no-own", action="store_true", help="leave out the priors fitted with half the questions (two folds)"
    )
    p.add_argument("--words", type=Path, default=WORDS, help="the relations' other words, for with_words")
    p.add_argument("--no-words", action="store_true", help="leave out the prior fitted with the relations' words")
    p.add_argument("--seed", type=int, default=0, help="of the question generation and the fit's held-out split")
    p.add_argument("--save-priors", type=Path, help="directory to save the fitted priors in (not saved by default)")
    args = p.parse_args(argv)
    questions = read_questions(args.questions)
    names = (
        ["uniform", "from_kg"] + ([] if args.no_one_hop else ["one_hop"]) + ([] if args.no_words else ["with_words"])
    )
    words = None if args.no_words else read_relation_words(args.words)
    started = time.perf_counter()
    encoder = Encoder.load()
    result: dict = {
        "questions_file": str(args.questions),
        "words_file": None if args.no_words else str(args.words),
        "k": K,
        "seed": args.seed,
        "priors": {},
    }
    with tempfile.TemporaryDirectory() as data_dir:
        state = RetrieverState(
            settings=RetrieverSettings(data_dir=Path(data_dir)), encoder=encoder, metrics=Metrics("bench_prior")
        )
        try:
            start = time.perf_counter()
            stats = ingest_triples(
                demo_triples(), encoder=encoder, store=state.store(), entities=state.entities, progress=False
            )
            state.store().optimize()
            result["kg"] = {
                "facts": stats.added,
                "relations": state.entities.relations,
                "load_seconds": round(time.perf_counter() - start, 1),
            }
            print(f"demo KG: {stats.added} facts in {result['kg']['load_seconds']} s", file=sys.stderr, flush=True)
            for name in names:
                print(f"prior: {name}", file=sys.stderr, flush=True)
                result["priors"].update(run_prior(name, state, questions, args.seed, args.save_priors, words))
            if not args.no_own:
                print("prior: with_own", file=sys.stderr, flush=True)
                result["priors"].update(run_with_own(state, questions, args.seed))
        finally:
            state.close()
    result["seconds"] = round(time.perf_counter() - started, 1)
    stamp(result)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(to_json(result), encoding="utf-8")
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
