"""Retriever benchmark on MetaQA: ingest speed, recall of a gold fact, search latency.

    python -m bench.retriever_bench [--metaqa-dir ../shared/data/metaqa] [--reuse]

Prints a table and writes bench/results/retriever.json. Everything is measured in this one run,
so the ratios (bf16/fp32, with/without relation prior) compare like with like.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from bench.provenance import stamp
from retriever_service.encoder import Encoder
from retriever_service.ingest import ingest_triples
from retriever_service.path_metrics import recall_at
from retriever_service.prior_fitting import fit_for_store
from retriever_service.readers import read_triples
from retriever_service.relation_prior import RelationPrior
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.launcher import ServiceProcess
from shared.metrics import Metrics
from shared.qa_data import METAQA_DIR, Question, metaqa_split

RESULTS = Path("bench/results")


def encoder_speed(texts: list[str], rounds: int = 3) -> dict:
    """bf16 autocast against fp32 on the same facts, alternating, best round of each (the machine is
    shared and noisy), and whether their vectors agree."""
    encoders = {name: Encoder.load(bf16=name == "bf16") for name in ("fp32", "bf16")}
    best = {name: 0.0 for name in encoders}
    vectors = {}
    for _ in range(rounds):
        for name, enc in encoders.items():
            start = time.perf_counter()
            vectors[name] = enc.encode(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - start))
    cos = (vectors["bf16"] * vectors["fp32"]).sum(axis=1)
    return {
        **{k: round(v) for k, v in best.items()},
        "speedup": round(best["bf16"] / best["fp32"], 2),
        "cos_min": float(cos.min()),
        "cos_mean": float(cos.mean()),
    }


def ingest(state: RetrieverState, kb: Path) -> dict:
    start = time.perf_counter()
    stats = ingest_triples(
        read_triples(kb, "pipe"), encoder=state.encoder, store=state.store(), entities=state.entities, progress=True
    )
    seconds = time.perf_counter() - start
    state.store().optimize()
    return {
        **stats.as_dict(),
        "seconds": round(seconds, 1),
        "facts_per_s": round(stats.added / seconds),
        "optimize_seconds": round(time.perf_counter() - start - seconds, 1),
    }


def recall_table(state: RetrieverState, test: list[Question]) -> dict:
    retriever = state.retriever()
    prior = retriever.relations
    rows = {}
    rows["linked + relation prior, brackets stripped"] = recall_at(retriever, test)
    rows["linked + relation prior, brackets as hints"] = recall_at(retriever, test, hints=True)
    retriever.relations = None
    rows["linked, cosine only, brackets stripped"] = recall_at(retriever, test)
    retriever.entities = type(retriever.entities)()  # empty index: nothing links, plain dense search
    rows["plain dense search"] = recall_at(retriever, test)
    retriever.relations, retriever.entities = prior, state.entities
    return {name: {f"R@{k}": round(v, 4) for k, v in r.items()} for name, r in rows.items()}


def latency(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "n": len(ms),
    }


def search_latency(state: RetrieverState, queries: list[str]) -> dict:
    retriever = state.retriever()
    store = retriever.store
    vectors = state.encoder.encode(queries)
    names = [sorted({n for e in state.entities.link(q) for n in e.names}) or None for q in queries]
    rows = {}
    for label, fn in {
        "store search, entity filter": lambda i: store.search(vectors[i : i + 1], 100, [names[i]]),
        "store search, no filter (HNSW)": lambda i: store.search(vectors[i : i + 1], 10, [None]),
        "full search in-process (link+embed+search+rerank)": lambda i: retriever.search([queries[i]], 10),
    }.items():
        samples = []
        for i in range(len(queries)):
            start = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - start)
        rows[label] = latency(samples)
    return rows


def http_latency(settings: RetrieverSettings, queries: list[str], port: int = 18401) -> dict:
    env = {"KGRAG_RETRIEVER_DATA_DIR": str(settings.data_dir), "KGRAG_RETRIEVER_COLLECTION": settings.collection}
    service = ServiceProcess("retriever_service", port, env, Path("var/log/bench_retriever.log")).start()
    try:
        service.wait_ready()
        samples = []
        with httpx.Client(base_url=service.url, timeout=10.0) as client:
            for q in queries:
                start = time.perf_counter()
                client.post("/v1/search", json={"query": q, "k": 10}).raise_for_status()
                samples.append(time.perf_counter() - start)
        return latency(samples)
    finally:
        service.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metaqa-dir", type=Path, default=METAQA_DIR)
    p.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    p.add_argument("--reuse", action="store_true", help="keep an existing index instead of ingesting again")
    p.add_argument("--latency-queries", type=int, default=500)
    args = p.parse_args()
    settings = RetrieverSettings(data_dir=args.data_dir, collection="metaqa")
    kb = args.metaqa_dir / "kb.txt"
    texts = [t.text for _, t in zip(range(4096), read_triples(kb, "pipe"), strict=False)]
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "encoder": encoder_speed(texts),
    }
    print(json.dumps(result["encoder"]), flush=True)
    if not args.reuse:
        shutil.rmtree(args.data_dir / "metaqa", ignore_errors=True)
        settings.relation_prior_path.unlink(missing_ok=True)
    state = RetrieverState(settings=settings, encoder=Encoder.load(), metrics=Metrics("bench"))
    previous = RESULTS / "retriever.json"
    if not args.reuse or state.store().count() == 0:
        result["ingest"] = ingest(state, kb)
        print(json.dumps(result["ingest"]), flush=True)
    elif previous.exists() and "ingest" in json.loads(previous.read_text()):
        result["ingest"] = json.loads(previous.read_text())["ingest"]  # the run that built the index
    test = metaqa_split(1, "test", args.metaqa_dir)
    if args.reuse and settings.relation_prior_path.is_file():
        result["relation_prior"] = json.loads(previous.read_text()).get("relation_prior") if previous.exists() else None
    else:  # the chain prior, fitted on MetaQA 1/2/3-hop dev as `kgrag-ingest fit-relations` does
        start = time.perf_counter()
        dev = [args.metaqa_dir / f"{hops}-hop" / "dev.txt" for hops in (1, 2, 3)]
        prior, report = fit_for_store(state.path_search(), dev)
        prior.save(settings.relation_prior_path)
        result["relation_prior"] = {
            "fit_seconds": round(time.perf_counter() - start, 1),
            "chosen_on_dev": report.chosen,
            "dev_questions_labelled": report.labelled,
            "held_out": report.held_out,
        }
    state.relations = RelationPrior.load(settings.relation_prior_path)
    print(json.dumps(result["relation_prior"]), flush=True)
    result["recall_test"] = recall_table(state, test)
    print(json.dumps(result["recall_test"]), flush=True)
    queries = [q.stripped for q in test[: args.latency_queries]]
    result["latency_in_process"] = search_latency(state, queries)
    state.close()
    result["latency_http"] = http_latency(settings, queries)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retriever.json").write_text(json.dumps(stamp(result), indent=2))
    print_table(result)


def print_table(result: dict) -> None:
    print(
        f"\nencoder facts/s: fp32 {result['encoder']['fp32']}, bf16 {result['encoder']['bf16']} "
        f"({result['encoder']['speedup']}x), cos min {result['encoder']['cos_min']:.4f}"
    )
    if "ingest" in result:
        i = result["ingest"]
        print(
            f"ingest: {i['added']} facts in {i['seconds']} s ({i['facts_per_s']} facts/s), "
            f"HNSW build {i['optimize_seconds']} s"
        )
    print(f"\n{'MetaQA 1-hop test (9,947 questions)':55s} R@1    R@5    R@10   R@20")
    for name, r in result["recall_test"].items():
        print(f"{name:55s} " + "  ".join(f"{r[k]:.3f}" for k in ("R@1", "R@5", "R@10", "R@20")))
    print(f"\n{'latency':55s} p50 ms   p95 ms")
    latencies = {**result["latency_in_process"], "over HTTP (POST /v1/search, k=10)": result["latency_http"]}
    for name, r in latencies.items():
        print(f"{name:55s} {r['p50_ms']:7.2f}  {r['p95_ms']:7.2f}")


if __name__ == "__main__":
    main()
