"""`kgrag-ingest`: load knowledge-graph files into the fact store, delete facts, fit the relation prior.

Settings come from the same `KGRAG_RETRIEVER_*` environment as the service; the flags below
override them. The embedded Qdrant Edge store belongs to one process at a time: load it before
starting the retriever, or use `POST /v1/facts` on a running service.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from retriever_service.demo_kg import demo_triples
from retriever_service.encoder import Encoder
from retriever_service.ingest import delete_facts, ingest_triples
from retriever_service.readers import FORMATS, ReaderError, ReadReport, read_triples
from retriever_service.relation_fitting import fit_relation_prior
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from retriever_service.store import StoreError
from shared.facts import Triple
from shared.logging_config import configure_logging
from shared.metrics import Metrics
from shared.qa_data import read_questions

log = logging.getLogger("kgrag.ingest")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgrag-ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="Qdrant Edge data directory (KGRAG_RETRIEVER_DATA_DIR)")
    p.add_argument("--qdrant-url", help="Qdrant server URL instead of the embedded store (QDRANT_URL)")
    p.add_argument("--collection", help="collection name (KGRAG_RETRIEVER_COLLECTION)")
    sub = p.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="load KG files (N-Triples, Turtle, head|relation|tail, TSV, JSONL)")
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument("--format", choices=FORMATS, help="default: from the file suffix (.txt is head|relation|tail)")
    load.add_argument("--batch-size", type=int, default=2048, help="facts embedded and stored per batch")
    sub.add_parser("demo", help="load the demo KG built from the countryinfo package")
    delete = sub.add_parser("delete", help="delete facts by id or by triple")
    delete.add_argument("--id", dest="ids", action="append", default=[], help="fact id (repeatable)")
    delete.add_argument("--triple", dest="triples", action="append", default=[],
                        help="'subject|relation|object' (repeatable)")
    fit = sub.add_parser("fit-relations", help="fit the relation prior on questions with answers (never test)")
    fit.add_argument("questions", type=Path, help="MetaQA question file or JSONL {question, answers}")
    fit.add_argument("--holdout", type=float, default=0.2, help="share of questions used to pick weight and temperature")
    sub.add_parser("stats", help="print the store's fact count and index state")
    return p


def _settings(args: argparse.Namespace) -> RetrieverSettings:
    overrides = {k: v for k, v in {"data_dir": args.data_dir, "qdrant_url": args.qdrant_url,
                                   "collection": args.collection}.items() if v is not None}
    return RetrieverSettings(**overrides)


def _load(state: RetrieverState, triples, batch_size: int = 2048) -> dict:
    start = time.perf_counter()
    stats = ingest_triples(triples, encoder=state.encoder, store=state.store(), entities=state.entities,
                           batch_size=batch_size, progress=True)
    elapsed = time.perf_counter() - start
    state.store().optimize()
    return {**stats.as_dict(), "seconds": round(elapsed, 1), "facts_per_s": round(stats.received / max(elapsed, 1e-9)),
            "optimize_seconds": round(time.perf_counter() - start - elapsed, 1)}


def _parse_triple(text: str) -> Triple:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 3 or not all(parts):
        raise SystemExit(f"--triple needs 'subject|relation|object', got {text!r}")
    return Triple(*parts)


def _run(args: argparse.Namespace, state: RetrieverState) -> dict:
    if args.command == "load":
        report = ReadReport()
        triples = (t for path in args.files for t in read_triples(path, args.format, report))
        result = _load(state, triples, args.batch_size)
        return {**result, "skipped_lines": report.skipped, "errors": [str(e) for e in report.errors[:20]]}
    if args.command == "demo":
        return _load(state, demo_triples())
    if args.command == "delete":
        ids = list(args.ids) + [_parse_triple(t).id for t in args.triples]
        return {"deleted": delete_facts(ids, store=state.store(), entities=state.entities)}
    if args.command == "fit-relations":
        prior, report = fit_relation_prior(state.retriever(), read_questions(args.questions), holdout=args.holdout)
        path = prior.save(state.settings.relation_prior_path)
        return {"saved": str(path), **vars(report)}
    return {"facts": state.store().count(), "index": state.store().info()}


def main(argv: list[str] | None = None) -> int:
    configure_logging("ingest")
    args = _parser().parse_args(argv)
    settings = _settings(args)
    state = RetrieverState(settings=settings, metrics=Metrics("ingest"),
                           encoder=Encoder.load(bf16=settings.encoder_bf16, threads=settings.torch_threads))
    try:
        result = _run(args, state)
        result.setdefault("facts", state.store().count())
    except (ReaderError, StoreError) as exc:
        print(f"kgrag-ingest: {exc}", file=sys.stderr)
        return 2
    finally:
        state.close()
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
