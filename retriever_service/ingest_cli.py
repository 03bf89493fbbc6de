"""`kgrag-ingest`: load knowledge-graph files into the fact store, delete facts, fit the relation prior.

Settings come from the same `KGRAG_RETRIEVER_*` environment as the service; the flags below
override them. The embedded Qdrant Edge store belongs to one process at a time: load it before
starting the retriever, or use `POST /v1/facts` on a running service.

`fit-relations --relation-words FILE` (and `demo --relation-words FILE`) gives the relations other
words for the generated questions (docs/retrieval.md): a JSON object from relation to words, or an
RDF file whose labels of predicates give them (an ontology); they are kept beside the store and
used by every later fit until another file is given.

RDF (N-Triples, N-Quads, Turtle; plain, .bz2, .gz, .xz) goes through the DBpedia rules by default
(docs/rdf.md): `--rules FILE` changes them, `stats FILE...` shows what they keep and leave out
without loading anything. A killed load, run again with the same files, resumes where it stopped
(a checkpoint file beside the store).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from retriever_service.checkpoints import Checkpoint
from retriever_service.demo_kg import demo_triples
from retriever_service.encoder import Encoder
from retriever_service.ingest import IngestStats, delete_facts, ingest_triples
from retriever_service.prior_fitting import fit_for_store
from retriever_service.rdf_rules import RdfRules, RulesError, load_rules
from retriever_service.readers import FORMATS, KgReader, ReaderError, ReadReport
from retriever_service.relation_words import RelationWords, RelationWordsError, read_relation_words
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from retriever_service.store import StoreError
from shared.facts import Triple
from shared.logging_config import configure_logging
from shared.metrics import Metrics

log = logging.getLogger("kgrag.ingest")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kgrag-ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, help="Qdrant Edge data directory (KGRAG_RETRIEVER_DATA_DIR)")
    p.add_argument("--qdrant-url", help="Qdrant server URL instead of the embedded store (QDRANT_URL)")
    p.add_argument("--collection", help="collection name (KGRAG_RETRIEVER_COLLECTION)")
    sub = p.add_subparsers(dest="command", required=True)
    load = sub.add_parser(
        "load", help="load KG files (N-Triples, N-Quads, Turtle, head|relation|tail, TSV, JSONL; plain or .bz2/.gz/.xz)"
    )
    load.add_argument("files", nargs="+", type=Path)
    _add_read_flags(load)
    load.add_argument("--batch-size", type=int, default=2048, help="facts embedded and stored per batch")
    load.add_argument("--restart", action="store_true", help="ignore the checkpoint of a killed load; read all again")
    sub.add_parser("demo", help="load the demo KG built from the countryinfo package")
    delete = sub.add_parser("delete", help="delete facts by id or by triple")
    delete.add_argument("--id", dest="ids", action="append", default=[], help="fact id (repeatable)")
    delete.add_argument(
        "--triple", dest="triples", action="append", default=[], help="'subject|relation|object' (repeatable)"
    )
    demo = sub.choices["demo"]
    demo.add_argument("--no-fit", action="store_true", help="do not fit the chain prior from generated questions")
    _add_words_flag(demo)
    fit = sub.add_parser(
        "fit-relations",
        help="fit the chain prior on questions with answers (never test) and/or on questions generated from the KG",
    )
    fit.add_argument(
        "questions",
        type=Path,
        nargs="*",
        help="MetaQA question files (their N-hop folder gives the hop "
        "count) or JSONL {question, answers, hops?}; none: questions generated from the KG",
    )
    fit.add_argument("--from-kg", action="store_true", help="add questions generated from the KG's chains")
    fit.add_argument(
        "--holdout", type=float, default=0.2, help="share of questions used to tune (weight, temperature, thresholds)"
    )
    _add_words_flag(fit)
    stats = sub.add_parser(
        "stats",
        help="with files: what loading them would keep and leave out, per relation and "
        "reason (nothing is loaded); without: the store's facts per relation",
    )
    stats.add_argument("files", nargs="*", type=Path)
    _add_read_flags(stats)
    stats.add_argument("--top", type=int, default=50, help="most relations (and predicates per reason) listed")
    return p


def _add_words_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--relation-words",
        type=Path,
        help="other words for the relations, used by the generated questions: JSON {relation: [words]} or an RDF "
        "file with labels of the predicates; kept beside the store for later fits",
    )
    p.add_argument(
        "--rules", type=Path, help="for RDF relation words: the rules file the KG was loaded with (default: DBpedia's)"
    )
    p.add_argument(
        "--languages",
        type=lambda text: [x.strip().lower() for x in text.split(",") if x.strip()],
        help="for RDF relation words: comma-separated languages of the labels to keep (default: en)",
    )


def _add_read_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, help="default: from the file suffix (.txt is head|relation|tail)")
    p.add_argument("--rules", type=Path, help="RDF rules file (TOML, docs/rdf.md); default: the DBpedia rules")
    p.add_argument(
        "--languages",
        type=lambda text: [x.strip().lower() for x in text.split(",") if x.strip()],
        help="comma-separated languages of literals to keep, preferred first (default: en)",
    )
    p.add_argument("--long-text", choices=("passages", "drop"), help="long literals (abstracts): passages or left out")
    p.add_argument(
        "--labels",
        choices=("prepass", "stream"),
        help="prepass: names read from all inputs first (default); stream: from earlier lines only",
    )


def _words_rules(args: argparse.Namespace) -> RdfRules:
    return load_rules(args.rules, languages=args.languages)


def _rules(args: argparse.Namespace) -> RdfRules:
    return load_rules(args.rules, languages=args.languages, long_text=args.long_text, labels=args.labels)


def checkpoint_path(settings: RetrieverSettings) -> Path:
    """Where a load records how far each input got: beside the store."""
    return settings.data_dir / f"{settings.collection}.ingest-checkpoint.json"


def _settings(args: argparse.Namespace) -> RetrieverSettings:
    overrides = {
        k: v
        for k, v in {"data_dir": args.data_dir, "qdrant_url": args.qdrant_url, "collection": args.collection}.items()
        if v is not None
    }
    return RetrieverSettings(**overrides)


def _load(state: RetrieverState, triples, batch_size: int = 2048, on_batch=None, progress: bool = True) -> dict:
    start = time.perf_counter()
    stats = ingest_triples(
        triples,
        encoder=state.encoder,
        store=state.store(),
        entities=state.entities,
        batch_size=batch_size,
        progress=progress,
        on_batch=on_batch,
    )
    elapsed = time.perf_counter() - start
    state.store().optimize()
    return {
        **stats.as_dict(),
        "seconds": round(elapsed, 1),
        "facts_per_s": round(stats.received / max(elapsed, 1e-9)),
        "optimize_seconds": round(time.perf_counter() - start - elapsed, 1),
    }


def _load_files(args: argparse.Namespace, state: RetrieverState) -> dict:
    """Load the files, recording after each stored batch how far each got; a checkpoint left by a killed
    load of the same files under the same rules is resumed."""
    rules = _rules(args)
    report = ReadReport()
    reader = KgReader(args.files, args.format, rules=rules, report=report, progress=True)
    checkpoint = Checkpoint(checkpoint_path(state.settings), rules.fingerprint())
    if args.restart:
        checkpoint.remove()
    keys = reader.keys()
    reader.marks = checkpoint.load(keys)
    resumed = {
        str(i.path): ("complete" if m.complete else m.line)
        for i, m in zip(reader.inputs, reader.marks, strict=True)
        if m.complete or m.line
    }
    reader.prepare()
    bar = tqdm(total=reader.total_bytes, unit="B", unit_scale=True, desc="load", smoothing=0.05)

    def on_batch(stats: IngestStats) -> None:
        checkpoint.save(keys, reader.marks)
        bar.update(reader.bytes_read - bar.n)
        # strings: tqdm writes a number of 10000 as "1e+4"
        bar.set_postfix(facts=f"{stats.received:,}", added=f"{stats.added:,}", refresh=False)

    with bar:
        result = _load(state, reader, args.batch_size, on_batch, progress=False)
        bar.update(reader.total_bytes - bar.n)
    checkpoint.remove()
    return {**result, "resumed_after_line": resumed, **report.as_dict(top=20)}


def _dry_run(args: argparse.Namespace) -> dict:
    """Read the files as a load would, without encoder or store: what would be kept and left out."""
    report = ReadReport()
    reader = KgReader(args.files, args.format, rules=_rules(args), report=report, progress=True)
    start = time.perf_counter()
    reader.prepare()
    ids = set()
    with tqdm(total=reader.total_bytes, unit="B", unit_scale=True, desc="read") as bar:
        for n, triple in enumerate(reader, start=1):
            ids.add(triple.id)
            if n % 8192 == 0:
                bar.update(reader.bytes_read - bar.n)
        bar.update(reader.total_bytes - bar.n)
    seconds = time.perf_counter() - start
    return {
        "files": [str(p) for p in args.files],
        "seconds": round(seconds, 2),
        "distinct_facts": len(ids),
        "statements_per_s": round(report.statements / max(seconds, 1e-9)),
        "names_indexed": len(reader.names),
        **report.as_dict(top=args.top),
    }


def _store_stats(state: RetrieverState, top: int) -> dict:
    relations = Counter(payload.get("relation", "") for payload in state.store().payloads())
    listed = dict(relations.most_common(top))
    if len(relations) > top:
        listed["(other relations)"] = sum(relations.values()) - sum(listed.values())
    return {
        "facts": state.store().count(),
        "index": state.store().info(),
        "distinct_relations": len(relations),
        "relations": listed,
    }


def _parse_triple(text: str) -> Triple:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 3 or not all(parts):
        raise SystemExit(f"--triple needs 'subject|relation|object', got {text!r}")
    return Triple(*parts)


def _fit(
    state: RetrieverState,
    files: list[Path],
    *,
    from_kg: bool,
    holdout: float,
    words: Path | None,
    rules: RdfRules | None = None,
) -> dict:
    """Fit the chain prior on the files and/or the KG's own questions; save it beside the store, and the
    relation words given beside it (those given before when none are; an RDF file's read under the rules)."""
    used, source = _relation_words(state.settings, words, rules)
    search = state.path_search()
    prior, report = fit_for_store(search, files, from_kg=from_kg, holdout=holdout, words=used)
    path = prior.save(state.settings.relation_prior_path)
    state.relations = prior
    out: dict = {"saved": str(path), **vars(report)}
    if used:
        kept = used.restricted(search.entities.relations)
        if words is not None:
            kept.save(state.settings.relation_words_path)
        counted = {"relations": len(kept.extra), "words": sum(map(len, kept.extra.values()))}
        out["relation_words"] = {"from": source, **counted}
    return out


def _relation_words(
    settings: RetrieverSettings, given: Path | None, rules: RdfRules | None
) -> tuple[RelationWords | None, str | None]:
    """The words given, else those kept beside the store by an earlier fit (lenient: facts may have gone since)."""
    if given is not None:
        return read_relation_words(given, rules), str(given)
    kept = settings.relation_words_path
    if kept.is_file():
        return dataclasses.replace(read_relation_words(kept), strict=False), str(kept)
    return None, None


def _run(args: argparse.Namespace, state: RetrieverState) -> dict:
    if args.command == "load":
        return _load_files(args, state)
    if args.command == "demo":
        loaded = _load(state, demo_triples())
        # nothing new since the fit, and no new words
        fitted = state.settings.relation_prior_path.is_file() and not loaded["added"] and not args.relation_words
        if args.no_fit or fitted:
            return loaded
        fit = _fit(state, [], from_kg=True, holdout=0.2, words=args.relation_words, rules=_words_rules(args))
        return {**loaded, "prior": fit}
    if args.command == "delete":
        ids = list(args.ids) + [_parse_triple(t).id for t in args.triples]
        return {"deleted": delete_facts(ids, store=state.store(), entities=state.entities)}
    if args.command == "fit-relations":
        return _fit(
            state,
            args.questions,
            from_kg=args.from_kg,
            holdout=args.holdout,
            words=args.relation_words,
            rules=_words_rules(args),
        )
    return _store_stats(state, args.top)


def main(argv: list[str] | None = None) -> int:
    configure_logging("ingest")
    args = _parser().parse_args(argv)
    try:
        if args.command == "stats" and args.files:
            result = _dry_run(args)
        else:
            result = _with_state(args)
    except (ReaderError, RulesError, RelationWordsError, StoreError) as exc:
        print(f"kgrag-ingest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    return 0


def _with_state(args: argparse.Namespace) -> dict:
    settings = _settings(args)
    if args.command == "load":
        _rules(args)  # a bad rules file is reported before the encoder loads
    if args.command in ("demo", "fit-relations"):
        _words_rules(args)
    state = RetrieverState(
        settings=settings,
        metrics=Metrics("ingest"),
        encoder=Encoder.load(bf16=settings.encoder_bf16, threads=settings.torch_threads),
    )
    try:
        result = _run(args, state)
        result.setdefault("facts", state.store().count())
    finally:
        state.close()
    return result


if __name__ == "__main__":
    raise SystemExit(main())
