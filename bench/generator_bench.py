"""Generator benchmark on MetaQA 1-hop test: Hits@1, latency, throughput, batched vs naive.

    python -m bench.generator_bench [--metaqa-dir ../shared/data/metaqa] [--sample 500]

Needs the MetaQA index that `python -m bench.retriever_bench` builds (var/bench, collection
"metaqa"). Prints a table and writes bench/results/generator.json. A fixed seeded sample of
test questions; the model is the one the service serves by default (the student when
models/student exists, else the SmolLM2-135M-Instruct base) or `--model` (a directory, a .gguf,
or "base" for the SmolLM2 base). The speed and http parts are stored per model name, so models
can be compared side by side. The http part also reads each load level's CPU time per answer for
both services and this client, and the machine's idle share, from /proc (Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import time
from pathlib import Path

import httpx
import numpy as np

from bench.provenance import stamp
from generator_service.lm_loading import load_causal_lm, teacher_gguf_path
from generator_service.rag import RagGenerator, RagRequest
from retriever_service.encoder import Encoder
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import answer_candidates
from shared.launcher import ServiceProcess
from shared.metrics import Metrics
from shared.names import fold
from shared.qa_data import METAQA_DIR, Question, metaqa_split

RESULTS = Path("bench/results")
BATCH = 16


def requests_for(state: RetrieverState, questions: list[Question], k: int, mode: str) -> list[RagRequest]:
    results = state.retriever().search([q.stripped for q in questions], k)
    return [
        RagRequest(
            question=q.stripped,
            facts=[f.text for f in r.facts],
            log_priors=[math.log(max(f.prior, 1e-30)) for f in r.facts],
            mode=mode,
            max_new_tokens=24,
            allowed_answers=answer_candidates([vars(f) for f in r.facts], {n for e in r.linked for n in e.names}),
        )
        for q, r in zip(questions, results, strict=True)
    ]


def hits_at_1(generator: RagGenerator, state: RetrieverState, questions: list[Question], k: int, mode: str) -> dict:
    hits, start = 0, time.perf_counter()
    for i in range(0, len(questions), BATCH):
        chunk = questions[i : i + BATCH]
        for q, result in zip(chunk, generator.generate(requests_for(state, chunk, k, mode)), strict=True):
            hits += fold(result.answer) in {fold(a) for a in q.answers}
    seconds = time.perf_counter() - start
    return {"hits@1": round(hits / len(questions), 4), "ms_per_question": round(1000 * seconds / len(questions), 1)}


def percentiles(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "n": len(ms),
    }


def batched_vs_naive(generator: RagGenerator, requests: list[RagRequest]) -> dict:
    """One request at a time, K=5: our shared-prefix batched marginal against one `generate` per fact."""
    times = {"batched": [], "naive": []}
    agree = 0
    for request in requests:
        start = time.perf_counter()
        ours = generator.generate([request])[0]
        times["batched"].append(time.perf_counter() - start)
        start = time.perf_counter()
        naive = generator.generate_naive(request)
        times["naive"].append(time.perf_counter() - start)
        agree += ours.answer == naive.answer
    b, n = float(np.mean(times["batched"])), float(np.mean(times["naive"]))
    return {
        "batched_ms": round(1000 * b, 1),
        "naive_ms": round(1000 * n, 1),
        "speedup": round(n / b, 2),
        "same_answer": f"{agree}/{len(requests)}",
        **{f"batched_{k}": v for k, v in percentiles(times["batched"]).items()},
    }


def batch_scaling(generator: RagGenerator, requests: list[RagRequest]) -> dict:
    """ms per question when the same requests run alone or 8 or 16 per batch: the whole answer, and
    its prefill (one forward pass over the batch's questions and facts, timed on its own). Their
    ratio is what batching can give at best; over HTTP the retriever round trip comes on top."""
    out = {}
    for size in (1, 8, 16):
        prefill = total = 0.0
        for i in range(0, len(requests), size):
            chunk = requests[i : i + size]
            start = time.perf_counter()
            generator.scorer.start_batch([r.question for r in chunk], [r.facts for r in chunk])
            prefill += time.perf_counter() - start
            start = time.perf_counter()
            generator.generate(chunk)
            total += time.perf_counter() - start
        out[f"batch {size}"] = {
            "ms_per_question": round(1000 * total / len(requests), 1),
            "prefill_ms_per_question": round(1000 * prefill / len(requests), 1),
        }
    out["ratio_8_1"] = round(out["batch 1"]["ms_per_question"] / out["batch 8"]["ms_per_question"], 2)
    return out


def in_process(args, questions: list[Question], parts: set[str]) -> dict:
    state = RetrieverState(
        settings=RetrieverSettings(data_dir=args.data_dir, collection="metaqa"),
        encoder=Encoder.load(),
        metrics=Metrics("bench"),
    )
    generator = RagGenerator(load_causal_lm(args.model, cache_dir=Path("var/cache/lm")))
    out = {}
    if "hits" in parts:
        out["hits_model"], out["hits"] = generator.name, {}
        for mode in ("token", "sequence"):
            for k in (1, 3, 5, 10):
                out["hits"][f"{mode} k={k}"] = row = hits_at_1(generator, state, questions, k, mode)
                print(f"{mode} k={k}: {row}", flush=True)
    if "speed" in parts:
        requests = requests_for(state, questions[: args.latency_n], 5, "token")
        out["batched_vs_naive_k5"] = {generator.name: batched_vs_naive(generator, requests)}
        print(out["batched_vs_naive_k5"], flush=True)
        out["batch_scaling_k5"] = {generator.name: batch_scaling(generator, requests[:48])}
        print(out["batch_scaling_k5"], flush=True)
    state.close()
    return out


async def _batches_run(client: httpx.AsyncClient) -> float:
    """How many answer batches the generator has run (its generation histogram's count)."""
    metrics = (await client.get("/metrics")).text
    return float(re.search(r"^generator_generation_duration_seconds_count\S* (\S+)$", metrics, re.M).group(1))


async def _load(url: str, questions: list[str], concurrency: int) -> dict:
    """`len(questions)` POST /v1/answer calls, `concurrency` at a time; answers per second, latency and
    the mean number of questions per model batch."""
    limit = asyncio.Semaphore(concurrency)
    samples, errors = [], 0

    async def one(client: httpx.AsyncClient, q: str) -> None:
        nonlocal errors
        async with limit:
            start = time.perf_counter()
            r = await client.post("/v1/answer", json={"question": q, "k": 5, "constrain": True})
            samples.append(time.perf_counter() - start)
            errors += r.status_code != 200

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        batches = await _batches_run(client)
        start = time.perf_counter()
        await asyncio.gather(*(one(client, q) for q in questions))
        seconds = time.perf_counter() - start
        batches = await _batches_run(client) - batches
    return {
        "answers_per_s": round(len(questions) / seconds, 2),
        "errors": errors,
        **percentiles(samples),
        "mean_batch": round(len(questions) / batches, 2),
    }


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) of each process so far; the machine's idle and total seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # utime, stime: fields 14, 15
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]  # user ... steal
    out["idle"], out["total"] = machine[3] / tick, sum(machine) / tick
    return out


def _cpu_use(before: dict[str, float], after: dict[str, float], answers: int) -> dict:
    """Where a load level's CPU went: ms per answer of each process, and the machine's idle share."""
    spent = {k: after[k] - before[k] for k in before}
    per_answer = {
        f"{k}_ms_per_answer": round(1000 * v / answers, 1) for k, v in spent.items() if k not in ("idle", "total")
    }
    return {**per_answer, "machine_idle": round(spent["idle"] / spent["total"], 2)}


def over_http(args, questions: list[Question]) -> dict:
    env = {"KGRAG_RETRIEVER_DATA_DIR": str(args.data_dir), "KGRAG_RETRIEVER_COLLECTION": "metaqa"}
    retriever = ServiceProcess("retriever_service", 18601, env, Path("var/log/bench_retriever.log")).start()
    model = {"KGRAG_GENERATOR_MODEL": str(args.model)} if args.model else {}
    generator = ServiceProcess(
        "generator_service",
        18600,
        {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url, **model},
        Path("var/log/bench_generator.log"),
    )
    try:
        retriever.wait_ready()
        generator.start().wait_ready(timeout_s=300)
        texts = [q.stripped for q in questions]
        served = httpx.get(f"{generator.url}/readyz", timeout=10).json().get("model")
        out = {"model": served, "latency": asyncio.run(_load(generator.url, texts[: args.latency_n], 1))}
        pids = {"retriever": retriever.proc.pid, "generator": generator.proc.pid, "client": os.getpid()}
        for c in (1, 8, 32):
            before = _cpu_snapshot(pids)
            row = asyncio.run(_load(generator.url, texts[: args.throughput_n], c))
            out[f"concurrency {c}"] = row = {**row, "cpu": _cpu_use(before, _cpu_snapshot(pids), row["n"])}
            print(f"concurrency {c}: {row}", flush=True)
        base = out["concurrency 1"]["answers_per_s"]
        out["throughput_ratio_c8_c1"] = round(out["concurrency 8"]["answers_per_s"] / base, 2)
        out["throughput_ratio_c32_c1"] = round(out["concurrency 32"]["answers_per_s"] / base, 2)
        return out
    finally:
        generator.stop()
        retriever.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metaqa-dir", type=Path, default=METAQA_DIR)
    p.add_argument("--data-dir", type=Path, default=Path("var/bench"))
    p.add_argument("--sample", type=int, default=500)
    p.add_argument("--latency-n", type=int, default=50)
    p.add_argument("--throughput-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model", default=None, help='model directory or .gguf, or "base" (default: what the service serves)'
    )
    p.add_argument(
        "--parts",
        default="hits,speed,http",
        help="comma-separated: hits (Hits@1 table), speed (batched vs naive), http (latency, throughput); "
        "each part replaces its entry in an existing results file",
    )
    args = p.parse_args()
    parts = set(args.parts.split(","))
    test = metaqa_split(1, "test", args.metaqa_dir)
    questions = random.Random(args.seed).sample(test, args.sample)
    path = RESULTS / "generator.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"sample": args.sample, "seed": args.seed})
    if args.model == "base":
        args.model = str(teacher_gguf_path())
    if parts & {"hits", "speed"}:
        measured, stored = in_process(args, questions, parts), result.setdefault("in_process", {})
        for key in ("batched_vs_naive_k5", "batch_scaling_k5"):  # kept per model
            if key in measured:
                stored.setdefault(key, {}).update(measured.pop(key))
        stored.update(measured)
    if "http" in parts:
        served = over_http(args, questions)
        result.setdefault("http", {})[served["model"]] = served
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp(result, sorted(parts)), indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
