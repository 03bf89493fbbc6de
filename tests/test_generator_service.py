"""The generator service through its FastAPI app: a tiny random Llama behind the real RagGenerator,
and the real retriever app (MiniLM, Qdrant in memory) in-process, reached through httpx.ASGITransport."""

import asyncio
import contextlib
import math
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from generator_service.app import create_app
from generator_service.rag import RagGenerator, RagRequest
from generator_service.routers.answer import allowed_answers
from generator_service.settings import GeneratorSettings
from retriever_transport import FACTS, RetrieverTransport, running_retriever
from shared.retriever_api import PathSearchResponse
from tiny_lm import tiny_lm

QUESTION = "What is the capital of France?"
NEW_METRICS = [
    "generator_queue_size",
    "generator_generated_tokens_total",
    "generator_generation_duration_seconds",
    "generator_seconds_per_token",
    "generator_retriever_call_duration_seconds",
]


class Blocking:
    """Delegates to a RagGenerator, but each answer batch first waits until `release` is set."""

    def __init__(self, inner: RagGenerator) -> None:
        self.inner, self.name = inner, inner.name
        self.entered, self.release = threading.Event(), threading.Event()

    def generate(self, requests):
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.generate(requests)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, encoder):
    yield from running_retriever(tmp_path_factory.mktemp("retriever"), encoder, FACTS, max_k=10)


@pytest.fixture(scope="module")
def empty_retriever(tmp_path_factory, encoder):
    yield from running_retriever(tmp_path_factory.mktemp("retriever"), encoder, [], max_k=10)


@pytest.fixture(scope="module")
def rag():
    return RagGenerator(tiny_lm())


@pytest.fixture
def switch(retriever):
    return RetrieverTransport(retriever.app)


def _settings(**overrides) -> GeneratorSettings:
    defaults = dict(retriever_backoff_s=0.01, torch_threads=1, batch_wait_ms=2)
    return GeneratorSettings(**(defaults | overrides))


@pytest.fixture
def make_client(rag, switch):
    """make_client(generator=..., transport=..., **settings) -> a started TestClient of a generator app."""
    with contextlib.ExitStack() as stack:

        def make(generator=rag, transport=switch, **overrides) -> TestClient:
            app = create_app(_settings(**overrides), generator, retriever_transport=transport)
            return stack.enter_context(TestClient(app))

        yield make


@pytest.fixture
def client(make_client):
    return make_client()


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"} and body["request_id"] == response.headers["x-request-id"]
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def _assert_marginal(body: dict, rag: RagGenerator, found: dict, constrained: bool = True) -> None:
    """prob = exp(log_prob) = sum_d prior * likelihood over the retrieved paths `found` (the retriever's reply),
    each likelihood is the answer's probability under its path alone (within the paths' ends when constrained),
    and the posteriors are the normalised shares; one-step paths' facts carry the same figures."""
    paths = body["paths"]
    assert [p["id"] for p in paths] == [p["id"] for p in found["paths"]]
    assert math.isclose(body["prob"], math.exp(body["log_prob"]), rel_tol=1e-9)
    assert math.isclose(sum(p["prior"] for p in paths), 1.0, rel_tol=1e-5)
    assert math.isclose(sum(p["posterior"] for p in paths), 1.0, rel_tol=1e-5)
    assert math.isclose(sum(p["prior"] * p["likelihood"] for p in paths), body["prob"], rel_tol=1e-3)
    allowed = allowed_answers(PathSearchResponse.model_validate(found)) if constrained else None
    for p in paths:
        alone = rag.score(body["question"], [p["text"]], [0.0], body["answer"], allowed)
        assert math.isclose(p["likelihood"], math.exp(alone.log_prob), rel_tol=1e-3, abs_tol=1e-9)
        assert math.isclose(p["posterior"], p["prior"] * p["likelihood"] / body["prob"], rel_tol=1e-3, abs_tol=1e-9)
    if all(len(p["facts"]) == 1 for p in paths):
        assert [(f["id"], f["prior"], f["posterior"]) for f in body["facts"]] == [
            (p["facts"][0]["id"], p["prior"], p["posterior"]) for p in paths
        ]


def _paths(retriever, question: str, k: int = 5) -> dict:
    r = retriever.post("/v1/paths", json={"query": question, "k": k})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_answer(client, retriever, rag, mode):
    found = _paths(retriever, QUESTION, k=3)
    r = client.post("/v1/answer", json={"question": QUESTION, "k": 3, "mode": mode, "max_new_tokens": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["question"] == QUESTION and body["mode"] == mode and body["model"] == "tiny-llama"
    assert isinstance(body["answer"], str) and isinstance(body["complete"], bool) and body["note"] is None
    assert [p["text"] for p in body["paths"]] == ["France capital Paris", "France borders Spain"]
    assert [f["text"] for f in body["facts"]] == ["France capital Paris", "France borders Spain"]
    assert body["linked"][0]["names"] == ["France"]
    assert [a["name"] for a in body["answers"]] == [a["name"] for a in found["answers"]] == ["Paris"]
    # the retriever's prior, passed on. Not to 1e-9: torch's thread count is per OS thread (OpenMP), taken from
    # the process default when a thread first uses it; run alone, this module's retriever threads do so before
    # the generator app sets 1 thread, the generator's after, and the same search comes back 1.7e-6 apart
    assert [p["prior"] for p in body["paths"]] == pytest.approx([p["prior"] for p in found["paths"]], rel=1e-5)
    _assert_marginal(body, rag, found)
    timings = body["timings"]
    assert min(timings.values()) >= 0 and timings["total_ms"] >= timings["retrieve_ms"] + timings["generate_ms"]


def test_constrained_beam_answer_is_an_end_of_the_paths(client, retriever, rag):
    r = client.post("/v1/answer", json={"question": QUESTION, "k": 3, "num_beams": 2, "constrain": True})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] in {"Paris", "Spain"}
    _assert_marginal(r.json(), rag, _paths(retriever, QUESTION, k=3))


def test_answers_are_constrained_unless_asked_otherwise(client, rag):
    body = {"question": QUESTION, "k": 3, "max_new_tokens": 4}
    constrained = client.post("/v1/answer", json=body).json()
    assert constrained["answer"] in {"Paris", "Spain"} and constrained["complete"]  # France is the question's
    free = client.post("/v1/answer", json=body | {"constrain": False}).json()
    paths = free["paths"]
    [alone] = rag.generate(
        [RagRequest(QUESTION, [p["text"] for p in paths], [math.log(p["prior"]) for p in paths], max_new_tokens=4)]
    )
    assert free["answer"] == alone.answer and free["log_prob"] == pytest.approx(alone.log_prob, abs=1e-3)


def test_score(client, retriever, rag):
    r = client.post("/v1/score", json={"question": QUESTION, "answer": "Paris"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "Paris" and body["log_prob"] < 0 and body["note"] is None
    assert {f["object"] for f in body["facts"]} == {"Paris", "Spain"}
    _assert_marginal(body, rag, _paths(retriever, QUESTION), constrained=False)  # /v1/score scores it as given


def test_batch_is_one_retriever_call_and_matches_single_answers(client, switch, retriever, rag):
    questions = [QUESTION, "What is the capital of Germany?", "Which country borders France?"]
    switch.calls.clear()
    r = client.post("/v1/answer/batch", json={"questions": questions, "k": 2, "mode": "sequence"})
    assert r.status_code == 200, r.text
    assert [call.path for call in switch.calls] == ["/v1/paths/batch"]
    results = r.json()["results"]
    assert [res["question"] for res in results] == questions
    for question, res in zip(questions, results, strict=True):
        _assert_marginal(res, rag, _paths(retriever, question, k=2))
        alone = client.post("/v1/answer", json={"question": question, "k": 2, "mode": "sequence"}).json()
        assert alone["answer"] == res["answer"]
        assert alone["log_prob"] == pytest.approx(res["log_prob"], abs=1e-3)


def test_an_empty_graph_gives_a_null_answer_with_a_note(make_client, empty_retriever):
    client = make_client(transport=httpx.ASGITransport(app=empty_retriever.app))
    body = client.post("/v1/answer", json={"question": QUESTION}).json()
    assert body["answer"] is None and body["log_prob"] is None and body["prob"] is None and body["complete"] is None
    assert body["facts"] == body["paths"] == body["answers"] == [] and "no entity" in body["note"]
    body = client.post("/v1/score", json={"question": QUESTION, "answer": "Paris"}).json()
    assert body["log_prob"] is None and body["facts"] == body["paths"] == [] and "no entity" in body["note"]
    r = client.post("/v1/answer/batch", json={"questions": [QUESTION, "Who wrote Hamlet?"]})
    assert [res["answer"] for res in r.json()["results"]] == [None, None]


def test_request_id_is_echoed_and_passed_to_the_retriever(client, switch):
    switch.calls.clear()
    r = client.post("/v1/answer", json={"question": QUESTION, "max_new_tokens": 2}, headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    assert [(call.path, call.request_id) for call in switch.calls] == [("/v1/paths", "req-42")]


@pytest.mark.parametrize(
    "path, body, code, says",
    [
        ("/v1/answer", {"question": ""}, "empty_question", "empty"),
        ("/v1/answer", {"question": "  \n "}, "empty_question", "empty"),
        ("/v1/answer", {"question": "x" * 1001}, "question_too_long", "limit is 1000"),
        ("/v1/answer", {}, "invalid_request", "question"),
        ("/v1/answer", {"question": QUESTION, "k": 21}, "k_out_of_range", "between 1 and 20"),
        ("/v1/answer", {"question": QUESTION, "k": 0}, "invalid_request", "k"),
        ("/v1/answer", {"question": QUESTION, "max_new_tokens": 65}, "max_new_tokens_out_of_range", "between 1 and 64"),
        ("/v1/answer", {"question": QUESTION, "num_beams": 9}, "num_beams_out_of_range", "between 1 and 8"),
        ("/v1/answer", {"question": QUESTION, "mode": "beam"}, "invalid_request", "'token' or 'sequence'"),
        ("/v1/answer/batch", {"questions": [QUESTION] * 33}, "batch_too_large", "limit is 32"),
        ("/v1/answer/batch", {"questions": [QUESTION, " "]}, "empty_question", "questions[1]"),
        ("/v1/answer/batch", {"questions": []}, "invalid_request", "questions"),
        ("/v1/score", {"question": QUESTION, "answer": ""}, "empty_answer", "answer"),
        ("/v1/score", {"question": QUESTION, "answer": "Paris", "k": 50}, "k_out_of_range", "between 1 and 20"),
    ],
)
def test_bad_input_is_a_422_that_says_what_is_wrong(client, switch, path, body, code, says):
    switch.calls.clear()
    error = _assert_error(client.post(path, json=body), 422, code)
    assert says in error["message"]
    assert switch.calls == []  # refused before the retriever is asked


def test_retriever_4xx_is_passed_on(client):
    error = _assert_error(client.post("/v1/answer", json={"question": QUESTION, "k": 15}), 422, "k_out_of_range")
    assert error["message"].startswith("retriever: ") and "between 1 and 10" in error["message"]


def test_body_too_large(make_client):
    client = make_client(max_body_bytes=2048)
    _assert_error(client.post("/v1/answer", json={"question": "x" * 3000}), 413, "body_too_large")


def test_retriever_down_is_a_quick_503_and_the_service_recovers(client, switch):
    switch.up = False
    switch.calls.clear()
    start = time.perf_counter()
    r = client.post("/v1/answer", json={"question": QUESTION})
    assert time.perf_counter() - start < 2.0
    _assert_error(r, 503, "retriever_unavailable")
    assert r.headers["retry-after"] == "1"
    assert len(switch.calls) == 3  # the call and two retries
    _assert_error(client.get("/readyz"), 503, "not_ready")
    switch.up = True
    assert client.post("/v1/answer", json={"question": QUESTION, "max_new_tokens": 2}).status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"


def test_unreachable_retriever_over_the_network(make_client):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(transport=None, retriever_url=f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    _assert_error(client.post("/v1/answer", json={"question": QUESTION}), 503, "retriever_unavailable")
    assert time.perf_counter() - start < 2.0
    _assert_error(client.get("/readyz"), 503, "not_ready")


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model": "tiny-llama", "queued": 0}
    client.post("/v1/answer", json={"question": QUESTION, "max_new_tokens": 3})
    text = client.get("/metrics").text
    for name in NEW_METRICS:
        assert name in text
    assert 'generator_http_requests_total{method="POST",route="/v1/answer",status="200"}' in text
    assert "generator_generation_duration_seconds_count 1.0" in text


def test_model_load_failure_is_reported(make_client, tmp_path):
    client = make_client(generator=None, model=str(tmp_path / "no-model"))
    for _ in range(100):
        r = client.get("/readyz")
        if "failed" in r.text:
            break
        time.sleep(0.02)
    assert "model failed to load" in _assert_error(r, 503, "not_ready")["message"]
    _assert_error(client.post("/v1/answer", json={"question": QUESTION}), 503, "model_not_ready")


def _async_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://generator")


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


def test_full_queue_is_refused_with_429_at_once(rag, switch):
    blocking = Blocking(rag)
    app = create_app(_settings(queue_size=1, batch_size=1), blocking, retriever_transport=switch)
    body = {"question": QUESTION, "max_new_tokens": 2}

    async def scenario():
        async with _async_client(app) as client, app.router.lifespan_context(app):
            first = asyncio.create_task(client.post("/v1/answer", json=body))
            await asyncio.to_thread(blocking.entered.wait, 5)  # the worker holds the first
            second = asyncio.create_task(client.post("/v1/answer", json=body))
            await _until(lambda: app.state.generator.answers.pending == 1)  # the second fills the queue
            start = time.perf_counter()
            third = await client.post("/v1/answer", json=body)
            assert time.perf_counter() - start < 1.0
            blocking.release.set()
            return third, await first, await second

    third, first, second = asyncio.run(scenario())
    _assert_error(third, 429, "queue_full")
    assert third.headers["retry-after"] == "1"
    assert first.status_code == second.status_code == 200


def test_timed_out_requests_do_not_break_the_worker(rag, switch):
    blocking = Blocking(rag)
    app = create_app(_settings(answer_timeout_s=0.3, batch_size=1), blocking, retriever_transport=switch)
    body = {"question": QUESTION, "max_new_tokens": 2}

    async def scenario():
        async with _async_client(app) as client, app.router.lifespan_context(app):
            # the first times out while its batch runs, the second while it is queued
            timed_out = await asyncio.gather(*(client.post("/v1/answer", json=body) for _ in range(2)))
            blocking.release.set()
            return timed_out, await client.post("/v1/answer", json=body)

    timed_out, after = asyncio.run(scenario())
    for r in timed_out:
        _assert_error(r, 504, "generation_timeout")
    assert after.status_code == 200, after.text


def test_shutdown_drains_the_queue(rag, switch):
    blocking = Blocking(rag)
    app = create_app(_settings(batch_size=1), blocking, retriever_transport=switch)
    body = {"question": QUESTION, "max_new_tokens": 2}

    async def scenario():
        lifespan = app.router.lifespan_context(app)
        async with _async_client(app) as client:
            await lifespan.__aenter__()
            pending = [asyncio.create_task(client.post("/v1/answer", json=body)) for _ in range(3)]
            await _until(lambda: blocking.entered.is_set() and app.state.generator.answers.pending == 2)
            shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0.1)  # the lifespan has started closing the queues
            refused = await client.post("/v1/answer", json=body)
            blocking.release.set()
            answered = await asyncio.gather(*pending)
            await shutdown
        return refused, answered

    refused, answered = asyncio.run(scenario())
    _assert_error(refused, 503, "shutting_down")
    assert [r.status_code for r in answered] == [200, 200, 200]
