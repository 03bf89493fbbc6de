"""Bounded load test of both services as processes on loopback.

    python -m bench.load [--data-dir var/demo] [--model DIR] [--requests 200] [--concurrency 1 4 16]
                         [--max-seconds 60]

Starts the retriever on the demo KG index (`make demo-index`, or --data-dir) and the generator
(the model it serves by default, or --model), then for each service and each concurrency level
c sends `--requests` requests, c at a time. A level stops early after `--max-seconds` and every
request has a timeout, so the run always ends. Reports requests/s, p50/p95/p99 latency of the
2xx answers, errors by status (or transport error), and each service's RSS after the level;
prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench.provenance import stamp
from shared.launcher import ServiceProcess

RESULTS = Path("bench/results")
COUNTRIES = (
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Kenya",
    "Canada",
    "India",
    "Spain",
    "Italy",
    "Egypt",
    "Peru",
    "Norway",
)
TEMPLATES = (
    "What is the capital of {}?",
    "Which countries border {}?",
    "What currency is used in {}?",
    "What language is spoken in {}?",
)
QUESTIONS = [t.format(c) for c in COUNTRIES for t in TEMPLATES]


@dataclass(frozen=True)
class Hit:
    status: int | str  # the HTTP status, or the name of the transport error
    started: float  # time.monotonic() when sent
    seconds: float
    code: str | None = None  # the error code of an error response in the services' shape
    retry_after: str | None = None


async def _send(client: httpx.AsyncClient, path: str, body: dict) -> Hit:
    start = time.monotonic()
    try:
        r = await client.post(path, json=body)
    except httpx.HTTPError as exc:
        return Hit(type(exc).__name__, start, time.monotonic() - start)
    code = r.json().get("error", {}).get("code") if r.status_code >= 400 and r.content else None
    return Hit(r.status_code, start, time.monotonic() - start, code, r.headers.get("retry-after"))


async def run_load(
    client: httpx.AsyncClient,
    path: str,
    bodies: list[dict],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    stop: threading.Event | None = None,
) -> list[Hit]:
    """POST `total` requests (bodies in turn), `concurrency` at a time; none is sent after
    `max_seconds` or once `stop` (set from another thread) is set. Each request is bounded by the
    client's timeout."""
    deadline, next_body, hits, sent = time.monotonic() + max_seconds, cycle(bodies), [], 0

    async def worker() -> None:
        nonlocal sent
        while sent < total and time.monotonic() < deadline and not (stop and stop.is_set()):
            sent += 1
            hits.append(await _send(client, path, next(next_body)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return hits


def summarize(hits: list[Hit], seconds: float) -> dict:
    ok = np.array([h.seconds for h in hits if isinstance(h.status, int) and h.status < 300]) * 1000
    errors: dict[str, int] = {}
    for hit in hits:
        if not (isinstance(hit.status, int) and hit.status < 300):
            errors[str(hit.status)] = errors.get(str(hit.status), 0) + 1
    pct = {f"p{q}_ms": round(float(np.percentile(ok, q)), 1) if ok.size else None for q in (50, 95, 99)}
    return {
        "sent": len(hits),
        "ok": int(ok.size),
        "req_per_s": round(len(hits) / max(seconds, 1e-9), 1),
        **pct,
        "errors": errors,
    }


def _rss_mb(service: ServiceProcess) -> float:
    return round(psutil.Process(service.proc.pid).memory_info().rss / 2**20, 1)


async def _level(
    service: ServiceProcess, path: str, bodies: list[dict], concurrency: int, total: int, args: argparse.Namespace
) -> dict:
    timeout = httpx.Timeout(args.timeout, connect=5.0)
    async with httpx.AsyncClient(
        base_url=service.url, timeout=timeout, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        start = time.monotonic()
        hits = await run_load(client, path, bodies, concurrency=concurrency, total=total, max_seconds=args.max_seconds)
        row = summarize(hits, time.monotonic() - start)
    return {"concurrency": concurrency, **row, "rss_mb": _rss_mb(service)}


def _run(retriever: ServiceProcess, generator: ServiceProcess, args: argparse.Namespace) -> dict:
    plan = {
        "retriever": (retriever, "/v1/search", [{"query": q, "k": 5} for q in QUESTIONS]),
        "generator": (generator, "/v1/answer", [{"question": q, "k": 5} for q in QUESTIONS]),
    }
    results = {}
    for name, (service, path, bodies) in plan.items():
        asyncio.run(_level(service, path, bodies, 1, 4, args))  # warm-up, not reported
        results[name] = [asyncio.run(_level(service, path, bodies, c, args.requests, args)) for c in args.concurrency]
    return results


def _table(results: dict) -> str:
    lines = [
        f"{'service':<10} {'c':>3} {'sent':>5} {'ok':>5} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'rss MB':>7}  errors"
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"{name:<10} {r['concurrency']:>3} {r['sent']:>5} {r['ok']:>5} {r['req_per_s']:>7} "
                f"{r['p50_ms']!s:>8} {r['p95_ms']!s:>8} {r['p99_ms']!s:>8} {r['rss_mb']:>7}  "
                f"{r['errors'] or '-'}"
            )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path("var/demo"), help="the retriever's Qdrant Edge store")
    p.add_argument("--model", help="the generator's model (directory or .gguf); default: the service's default")
    p.add_argument("--requests", type=int, default=200, help="requests per service and concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--max-seconds", type=float, default=60.0, help="no request is sent after this, per level")
    p.add_argument("--timeout", type=float, default=60.0, help="per request")
    p.add_argument("--retriever-port", type=int, default=18701)
    p.add_argument("--generator-port", type=int, default=18700)
    p.add_argument("--log-dir", type=Path, default=Path("var/log"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not any(args.data_dir.glob("*/edge_config.json")):  # <data dir>/<collection>/
        raise SystemExit(f"no fact store in {args.data_dir}: run `make demo-index` or pass --data-dir")
    retriever = ServiceProcess(
        "retriever_service",
        args.retriever_port,
        {"KGRAG_RETRIEVER_DATA_DIR": str(args.data_dir)},
        args.log_dir / "load_retriever.log",
    )
    env = {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url} | (
        {"KGRAG_GENERATOR_MODEL": args.model} if args.model else {}
    )
    generator = ServiceProcess("generator_service", args.generator_port, env, args.log_dir / "load_generator.log")
    try:
        retriever.start()
        generator.start()
        retriever.wait_ready()
        generator.wait_ready(timeout_s=300)
        model_name = httpx.get(f"{generator.url}/readyz", timeout=10).json()["model"]
        results = _run(retriever, generator, args)
    finally:
        generator.stop()
        retriever.stop()
    settings = {k: str(v) for k, v in vars(args).items()} | {"model_name": model_name}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(stamp({"settings": settings, "results": results}), indent=2))
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
