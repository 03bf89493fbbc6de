"""The DBpedia example, before and after issue 14: examples/dbpedia/dbpedia.nt loaded with the reader
before it (retriever_service/readers.py at BEFORE, loaded from git at run time) and with today's
(long text as passages, and left out), each into a fresh store; the questions of
examples/dbpedia/questions.jsonl answered in process: the retriever's top-k facts, then the
generator's constrained RAG-Token answer over them (`answers`). The service's pipeline today, "after,
paths": the new reader, a chain prior fitted on questions generated from the example KG itself (no
training questions), the path search's replies and the generator over them as /v1/answer builds its
requests (`path_answers`).

    python -m bench.dbpedia_bench [--k 5]

Right: the answer folds (shared.names.fold) to a gold answer. Retrieval: the top fact names a gold
answer (its object or subject), or one of the k facts does. Prints a table and writes
bench/results/dbpedia.json (commit, date, per-question rows, totals).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.provenance import stamp
from generator_service.lm_loading import load_causal_lm
from generator_service.rag import RagGenerator, RagRequest
from generator_service.routers.answer import rag_request
from generator_service.schemas import GenerationOptions
from generator_service.settings import GeneratorSettings
from retriever_service.encoder import Encoder
from retriever_service.entity_linking import ALIAS_RELATIONS
from retriever_service.ingest import ingest_triples
from retriever_service.path_replies import search_replies
from retriever_service.prior_fitting import fit_for_store
from retriever_service.rdf_rules import dbpedia_rules
from retriever_service.readers import read_triples
from retriever_service.retrieval import SearchResult
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import Triple, answer_candidates
from shared.metrics import Metrics
from shared.names import fold
from shared.retriever_api import PathOptions, PathSearchResponse

EXAMPLE = Path("examples/dbpedia")
RESULTS = Path("bench/results")
BEFORE = "27a5443"  # the last commit with the reader issue 14 was written about
LM_CACHE = Path("var/cache/lm")


def reader_before(commit: str = BEFORE):
    """retriever_service/readers.py as it was at `commit`, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{commit}:retriever_service/readers.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"readers_{commit}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"readers_{commit}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


def readings(kg: Path) -> dict[str, tuple[Callable[[], Iterable[Triple]], bool]]:
    """name -> (the triples, whether alias objects may be answers). Before issue 14; now with long text
    left out (the default) or as passages; and a diagnostic of the answer step: the default reading with
    the objects of "also known as" facts not offered as answers."""
    old = reader_before()
    return {
        "before": (lambda: old.read_triples(kg), True),
        "after": (lambda: read_triples(kg, rules=dbpedia_rules()), True),
        "after_passages": (lambda: read_triples(kg, rules=dbpedia_rules(long_text="passages")), True),
        "after_no_alias_answers": (lambda: read_triples(kg, rules=dbpedia_rules()), False),
    }


def answers(generator: RagGenerator, found: list[SearchResult], offer_aliases: bool = True) -> list[str | None]:
    """The generator's answers to searched questions (decoded together), as /v1/answer gives them for facts:
    RAG-Token, greedy, constrained to the entity names of the facts with weight, the question's own entities
    left out; None for a question without facts. offer_aliases=False: an "also known as" fact offers no
    answer of its own (a diagnostic, not what the service does)."""
    requests = {}
    for i, result in enumerate(found):
        if not result.facts:
            continue
        facts = [
            {"subject": f.subject, "object": f.object, "prior": f.prior}
            for f in result.facts
            if offer_aliases or f.relation not in ALIAS_RELATIONS
        ]
        linked = {name for entity in result.linked for name in entity.names}
        requests[i] = RagRequest(
            question=result.query,
            facts=[f.text for f in result.facts],
            log_priors=[math.log(f.prior) if f.prior > 0 else -math.inf for f in result.facts],
            allowed_answers=answer_candidates(facts, linked),
        )
    given = dict(zip(requests, (r.answer for r in generator.generate(list(requests.values()))), strict=True))
    return [given.get(i) for i in range(len(found))]


def path_answers(generator: RagGenerator, replies: list[PathSearchResponse]) -> list[str | None]:
    """The generator's answers over the path search's replies, as /v1/answer gives them (None: abstained)."""
    options = GenerationOptions()
    requests = {
        i: rag_request(r, options, GeneratorSettings().default_max_new_tokens)
        for i, r in enumerate(replies)
        if r.paths and not r.abstain
    }
    given = dict(zip(requests, (r.answer for r in generator.generate(list(requests.values()))), strict=True))
    return [given.get(i) for i in range(len(replies))]


def run_paths(
    triples: Iterable[Triple], questions: list[dict], encoder: Encoder, generator: RagGenerator, k: int
) -> dict:
    """The example through today's service pipeline: load, fit the chain prior on the KG's own questions, search
    paths, answer."""
    with tempfile.TemporaryDirectory() as data_dir:
        state = RetrieverState(
            settings=RetrieverSettings(data_dir=Path(data_dir)), encoder=encoder, metrics=Metrics("bench_paths")
        )
        try:
            stats = ingest_triples(triples, encoder=encoder, store=state.store(), entities=state.entities)
            state.relations, report = fit_for_store(state.path_search(), [], from_kg=True)
            replies = search_replies(
                state.path_search(), state.settings, [q["question"] for q in questions], PathOptions(k=k)
            )
        finally:
            state.close()
    rows = []
    for question, reply, given in zip(questions, replies, path_answers(generator, replies), strict=True):
        gold = {fold(a) for a in question["answers"]}
        ends = [p.steps[-1].entity for p in reply.paths]
        rows.append(
            {
                "answer": given,
                "right": given is not None and fold(given) in gold,
                "top_fact": reply.paths[0].text[:160] if reply.paths else None,
                "top_fact_right": bool(ends) and fold(ends[0]) in gold,
                "gold_in_k": any(fold(e) in gold for e in ends),
                "abstained": reply.abstain,
                "note": reply.note,
                "linked": sorted({n for e in reply.linked for n in e.names}),
            }
        )
    totals = {key: sum(r[key] for r in rows) for key in ("right", "top_fact_right", "gold_in_k", "abstained")}
    return {"facts": stats.added, "totals": totals, "rows": rows, "prior_fit": report.held_out | report.seconds}


def names_gold(fact, gold: set[str]) -> bool:
    return fold(fact.object) in gold or fold(fact.subject) in gold


def run_reading(
    name: str,
    triples: Iterable[Triple],
    questions: list[dict],
    encoder: Encoder,
    generator: RagGenerator,
    k: int,
    offer_aliases: bool = True,
) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        state = RetrieverState(
            settings=RetrieverSettings(data_dir=Path(data_dir)), encoder=encoder, metrics=Metrics(f"bench_{name}")
        )
        try:
            stats = ingest_triples(triples, encoder=encoder, store=state.store(), entities=state.entities)
            found = state.retriever().search([q["question"] for q in questions], k)
        finally:
            state.close()
    rows = []
    for question, result, given in zip(questions, found, answers(generator, found, offer_aliases), strict=True):
        gold = {fold(a) for a in question["answers"]}
        top = result.facts[0] if result.facts else None
        rows.append(
            {
                "answer": given,
                "right": given is not None and fold(given) in gold,
                "top_fact": top.text[:160] if top else None,
                "top_fact_right": bool(top and names_gold(top, gold)),
                "gold_in_k": any(names_gold(f, gold) for f in result.facts),
                "linked": sorted({n for e in result.linked for n in e.names}),
            }
        )
    totals = {key: sum(r[key] for r in rows) for key in ("right", "top_fact_right", "gold_in_k")}
    return {"facts": stats.added, "totals": totals, "rows": rows}


def print_table(result: dict) -> None:
    names = list(result["readings"])
    print(f"\n{'question':<46}" + "".join(f"{n[:27]:>28}" for n in names))
    for i, q in enumerate(result["questions"]):
        cells = []
        for n in names:
            row = result["readings"][n]["rows"][i]
            mark = "+" if row["right"] else ("~" if row["gold_in_k"] else "-")
            cells.append(f"{mark} {str(row['answer'])[:24]:<25}")
        print(f"{q['question'][:45]:<46}" + "".join(f"{c:>28}" for c in cells))
    n = len(result["questions"])
    for key, label in (
        ("right", "answered right"),
        ("top_fact_right", "top fact names a gold answer"),
        ("gold_in_k", "a gold answer among the k facts"),
    ):
        print(f"{label:<46}" + "".join(f"{result['readings'][r]['totals'][key]:>25}/{n}" for r in names))
    print("facts stored".ljust(46) + "".join(f"{result['readings'][r]['facts']:>28}" for r in names))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=5, help="facts retrieved per question (the retriever's default)")
    p.add_argument("--kg", type=Path, default=EXAMPLE / "dbpedia.nt")
    p.add_argument("--questions", type=Path, default=EXAMPLE / "questions.jsonl")
    args = p.parse_args(argv)
    questions = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    encoder = Encoder.load()
    lm = load_causal_lm(None, cache_dir=LM_CACHE)
    generator = RagGenerator(lm)
    start = time.perf_counter()
    result = {
        "kg": str(args.kg),
        "k": args.k,
        "model": lm.name,
        "before_commit": BEFORE,
        "questions": questions,
        "readings": {},
    }
    for name, (read, offer_aliases) in readings(args.kg).items():
        print(f"reading: {name}", file=sys.stderr)
        result["readings"][name] = run_reading(name, read(), questions, encoder, generator, args.k, offer_aliases)
    print("reading: after, paths (the service's pipeline)", file=sys.stderr)
    result["readings"]["after_paths"] = run_paths(
        read_triples(args.kg, rules=dbpedia_rules()), questions, encoder, generator, args.k
    )
    result["seconds"] = round(time.perf_counter() - start, 1)
    stamp(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dbpedia.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
