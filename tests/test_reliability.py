"""Reliability of the services as real processes on loopback (slow): overload, faults, shutdown.

The generator serves a tiny random Llama saved with `save_pretrained` (it loads in a second); the
retriever serves the real MiniLM over the movies fixture, loaded by the ingest CLI. Load comes
from `bench.load.run_load` (asyncio + httpx, a bounded count and time).
"""

import asyncio
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import psutil
import pytest

from bench.load import Hit, run_load
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.launcher import ServiceProcess
from shared.metrics import Metrics
from tests.conftest import FIXTURES
from tiny_lm import tiny_lm

pytestmark = pytest.mark.slow
QUESTION = {"question": "Who directed Forrest Gump?", "k": 5}
# more model work per request: free generation, up to 32 tokens in 4 beams (a constrained answer ends with a name)
SLOW_QUESTION = {**QUESTION, "max_new_tokens": 32, "num_beams": 4, "constrain": False}
ONE_THREAD = {"KGRAG_RETRIEVER_TORCH_THREADS": "1"}  # MiniLM runs 4x slower on 2 shared cores with 2 threads
TINY_GENERATOR = {
    "KGRAG_GENERATOR_DTYPE": "float32",
    "KGRAG_GENERATOR_TORCH_THREADS": "1",
    "KGRAG_GENERATOR_RETRIEVER_READ_TIMEOUT_S": "5",
}


def _ingest(data_dir, *args: str, timeout_s: float = 300) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "retriever_service.ingest_cli", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
        env=os.environ | ONE_THREAD,
    )
    return json.loads(done.stdout)


def _rss_mb(service: ServiceProcess) -> float:
    return psutil.Process(service.proc.pid).memory_info().rss / 2**20


def _load(url: str, path: str, body: dict, concurrency: int, total: int, max_seconds: float, **kw) -> list[Hit]:
    async def go() -> list[Hit]:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:
            return await run_load(c, path, [body], concurrency=concurrency, total=total, max_seconds=max_seconds, **kw)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    lm, path = tiny_lm(), tmp_path_factory.mktemp("tiny-llama")
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory, logs, model_dir):
    """A retriever and a generator with a small queue (2 waiting, 1 at a time in the model), and a
    second retriever, on a copy of the store, that serves at most 2 requests at a time."""
    store = tmp_path_factory.mktemp("movies")
    _ingest(store, "load", str(FIXTURES / "movies.txt"))
    copy = tmp_path_factory.mktemp("movies-copy") / "store"
    shutil.copytree(store, copy)
    retriever = ServiceProcess(
        "retriever_service", 18531, {**ONE_THREAD, "KGRAG_RETRIEVER_DATA_DIR": str(store)}, logs / "retriever.log"
    ).start()
    limited = ServiceProcess(
        "retriever_service",
        18532,
        {**ONE_THREAD, "KGRAG_RETRIEVER_DATA_DIR": str(copy), "KGRAG_RETRIEVER_MAX_IN_FLIGHT": "2"},
        logs / "limited.log",
    ).start()
    generator = ServiceProcess(
        "generator_service",
        18530,
        {
            **TINY_GENERATOR,
            "KGRAG_GENERATOR_RETRIEVER_URL": retriever.url,
            "KGRAG_GENERATOR_MODEL": str(model_dir),
            "KGRAG_GENERATOR_QUEUE_SIZE": "2",
            "KGRAG_GENERATOR_BATCH_SIZE": "1",
        },
        logs / "generator.log",
    ).start()
    for service in (retriever, limited, generator):
        service.wait_ready()
    yield retriever, limited, generator
    for service in (generator, limited, retriever):
        service.stop()


def _overload(service: ServiceProcess, path: str, body: dict, concurrency: int, total: int) -> tuple[list[Hit], float]:
    """`total` requests, `concurrency` at a time (30 s at most), after a warm-up; the hits and the
    largest growth of the service's RSS (MB) sampled while they ran."""
    _load(service.url, path, body, 1, 3, 30)
    base, growth, done = _rss_mb(service), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            growth[0] = max(growth[0], _rss_mb(service) - base)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return _load(service.url, path, body, concurrency, total, 30), growth[0]
    finally:
        done.set()
        sampler.join()


def _report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def test_generator_overload_is_refused_with_429(services, capsys):
    """Twice what the generator takes at once (2 queued + 1 in the model): some 429, no 5xx, RSS flat."""
    generator = services[2]
    hits, growth = _overload(generator, "/v1/answer", SLOW_QUESTION, concurrency=6, total=120)
    statuses = Counter(h.status for h in hits)
    _report(capsys, f"generator overload: {dict(statuses)}, RSS growth {growth:.1f} MB")
    assert set(statuses) <= {200, 429} and statuses[200] > 0 and statuses[429] > 0, statuses
    assert all(h.code == "queue_full" and h.retry_after == "1" for h in hits if h.status == 429)
    assert growth < 100 and generator.proc.poll() is None


def test_retriever_overload_is_refused_with_429(services, capsys):
    """Twice the retriever's max_in_flight (2): some 429, no 5xx, RSS flat."""
    limited = services[1]
    hits, growth = _overload(limited, "/v1/search", {"query": QUESTION["question"], "k": 5}, concurrency=4, total=200)
    statuses = Counter(h.status for h in hits)
    _report(capsys, f"retriever overload: {dict(statuses)}, RSS growth {growth:.1f} MB")
    assert set(statuses) <= {200, 429} and statuses[200] > 0 and statuses[429] > 0, statuses
    assert all(h.code == "too_many_requests" and h.retry_after == "1" for h in hits if h.status == 429)
    assert growth < 100 and limited.proc.poll() is None


def _first_answer_after(url: str, within_s: float) -> float:
    """Seconds until POST /v1/answer gives 200 (polling), at most `within_s`."""
    start = time.monotonic()
    while (waited := time.monotonic() - start) < within_s:
        if httpx.post(f"{url}/v1/answer", json=QUESTION, timeout=10).status_code == 200:
            return waited
        time.sleep(0.1)
    raise AssertionError(f"no answer within {within_s} s of the retriever's restart")


def test_retriever_killed_under_load(services, capsys):
    """SIGKILL the retriever while 2 clients keep asking the generator: 503 (retriever_unavailable,
    Retry-After) within the retriever timeout, nothing else; answers again right after the restart;
    the generator never restarts. The restart reopens the Qdrant Edge directory after the SIGKILL."""
    retriever, _, generator = services
    pid, stop, hits = generator.proc.pid, threading.Event(), []
    load = threading.Thread(
        target=lambda: hits.extend(_load(generator.url, "/v1/answer", QUESTION, 2, 100_000, 120, stop=stop))
    )
    load.start()
    try:
        time.sleep(2)
        killed = time.monotonic()
        retriever.stop(sig=signal.SIGKILL)
        time.sleep(2)
        retriever.start().wait_ready()
        restarted = time.monotonic()
        recovery_s = _first_answer_after(generator.url, 10)
        time.sleep(1)
    finally:
        stop.set()
        load.join()
    down = [h for h in hits if h.status != 200]
    first_503 = min(h.started + h.seconds for h in down) - killed
    _report(
        capsys,
        f"retriever killed: {Counter(h.status for h in hits)}; first 503 {first_503:.2f} s after the "
        f"kill, slowest 503 {max(h.seconds for h in down):.2f} s, "
        f"restart took {restarted - killed - 2:.1f} s, "
        f"answers {recovery_s:.2f} s after it",
    )
    assert down and all(h.status == 503 and h.code == "retriever_unavailable" and h.retry_after for h in down)
    assert max(h.seconds for h in down) < 5  # KGRAG_GENERATOR_RETRIEVER_READ_TIMEOUT_S
    assert any(h.status == 200 and h.started > restarted for h in hits)
    assert generator.proc.pid == pid and generator.proc.poll() is None


def _kill_at(proc: subprocess.Popen, facts: int, timeout_s: float = 300) -> int:
    """SIGKILL the ingest once its progress bar (on stderr: "load: ... facts=12,000, added=12,000]") shows
    `facts` facts; returns the count shown."""
    seen, tail, deadline = 0, b"", time.monotonic() + timeout_s
    while seen < facts:
        assert proc.poll() is None and time.monotonic() < deadline, "the ingest ended before it was killed"
        if select.select([proc.stderr], [], [], 1.0)[0]:
            tail = (tail + os.read(proc.stderr.fileno(), 65536))[-4096:]
            seen = max([seen, *(int(n.replace(b",", b"")) for n in re.findall(rb"facts=([\d,]+)", tail))])
    proc.kill()
    proc.wait()
    return seen


def test_ingest_killed_half_way_then_run_again(tmp_path, encoder, capsys):
    """A load killed with SIGKILL half-way and run again resumes after its last checkpoint and stores each
    fact exactly once; the Qdrant Edge directory it left reopens, and a search finds a fact of each half."""
    n, kg, store = 20_000, tmp_path / "kg.txt", tmp_path / "store"
    kg.write_text("".join(f"e{i}|r|o{i}\n" for i in range(n)))
    argv = [
        sys.executable,
        "-m",
        "retriever_service.ingest_cli",
        "--data-dir",
        str(store),
        "load",
        str(kg),
        "--batch-size",
        "1000",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ | ONE_THREAD)
    killed_at = _kill_at(proc, n // 2)
    killed_s = time.monotonic() - start
    again = _ingest(store, "load", str(kg))
    _report(capsys, f"ingest killed at {killed_at} facts ({killed_s:.1f} s); the re-run: {again}")
    [resumed] = again["resumed_after_line"].values()  # the run again starts after the last checkpoint
    assert resumed >= killed_at  # a batch is checkpointed before the progress bar counts it
    assert again["facts"] == n and again["received"] == n - resumed  # one triple a line
    assert again["added"] + again["existing"] == again["received"]
    assert _ingest(store, "stats")["facts"] == n
    state = RetrieverState(settings=RetrieverSettings(data_dir=store), encoder=encoder, metrics=Metrics("reopen"))
    try:
        for i in (7, n - 7):
            [found] = state.retriever().search([f"What is the r of e{i}?"], 1)
            assert (found.facts[0].subject, found.facts[0].object) == (f"e{i}", f"o{i}")
    finally:
        state.close()


async def _until_queued(client: httpx.AsyncClient, n: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if float(re.search(r"^generator_queue_size (\S+)$", (await client.get("/metrics")).text, re.M)[1]) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} requests queued after {timeout_s} s")


async def _refused(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as fresh:
        try:
            await fresh.get(f"{url}/healthz")
        except httpx.ConnectError:
            return True
    return False


def test_sigterm_lets_requests_in_flight_finish(services, model_dir, logs, capsys):
    """SIGTERM while 8 requests are in flight (one at a time through the model): all 8 get 200, no
    connection is reset, a new connection is refused, and the process shuts down cleanly (uvicorn
    then re-raises the SIGTERM it caught, so the exit status is -SIGTERM)."""
    generator = ServiceProcess(
        "generator_service",
        18533,
        {
            **TINY_GENERATOR,
            "KGRAG_GENERATOR_RETRIEVER_URL": services[0].url,
            "KGRAG_GENERATOR_MODEL": str(model_dir),
            "KGRAG_GENERATOR_BATCH_SIZE": "1",
        },
        logs / "shutdown.log",
    ).start()
    generator.wait_ready()

    async def go() -> tuple[list, bool, float]:
        async with httpx.AsyncClient(base_url=generator.url, timeout=60) as client:
            tasks = [asyncio.create_task(client.post("/v1/answer", json=SLOW_QUESTION)) for _ in range(8)]
            await _until_queued(client, 4)
            generator.proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            await asyncio.sleep(0.2)
            refused = await _refused(generator.url)
            responses = await asyncio.gather(*tasks, return_exceptions=True)
            return responses, refused, time.monotonic() - sent

    responses, refused, drained_s = asyncio.run(go())
    start = time.monotonic()
    code = generator.proc.wait(timeout=30)
    _report(
        capsys,
        f"SIGTERM: {len(responses)} in flight answered in {drained_s:.2f} s, exit {code} "
        f"{time.monotonic() - start:.2f} s later",
    )
    assert [getattr(r, "status_code", r) for r in responses] == [200] * 8
    assert refused and code == -signal.SIGTERM
    lines = (logs / "shutdown.log").read_text().splitlines()
    messages = [json.loads(line)["message"] for line in lines if line.startswith("{")]  # not progress bars
    assert messages[-2:] == ["Application shutdown complete.", f"Finished server process [{generator.proc.pid}]"]
