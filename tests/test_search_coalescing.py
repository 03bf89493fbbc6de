"""generator_service.search_coalescing against the real retriever app (MiniLM, Qdrant in memory),
reached through a transport that records every call and can hold calls back."""

import asyncio

import pytest
from prometheus_client import Histogram

from generator_service.retriever_client import RetrieverClient, RetrieverRejected, RetrieverUnavailable
from generator_service.search_coalescing import SearchCoalescer
from generator_service.settings import GeneratorSettings
from retriever_transport import FACTS, RetrieverTransport, running_retriever
from shared.retriever_api import PathOptions

QUESTIONS = [
    "What is the capital of France?",
    "What is the capital of Germany?",
    "Which country borders France?",
    "Where is Paris?",
    "Berlin?",
]
MAX_QUERY_CHARS = 200
TWO = PathOptions(k=2)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, encoder):
    yield from running_retriever(tmp_path_factory.mktemp("retriever"), encoder, FACTS, max_query_chars=MAX_QUERY_CHARS)


def _client(gate: RetrieverTransport) -> RetrieverClient:
    settings = GeneratorSettings(retriever_retries=0)
    return RetrieverClient(settings, Histogram("calls", "retriever calls", registry=None), transport=gate)


async def _search_all(gate: RetrieverTransport, questions: list[str], max_batch: int) -> list:
    """The first question searched (k=2), then the others while its call is held; then the calls go through."""
    coalescer = SearchCoalescer(_client(gate), max_batch=max_batch)
    first = asyncio.create_task(coalescer.search(questions[0], TWO, "req-0"))
    await asyncio.sleep(0.05)
    assert len(gate.calls) == 1  # a lone search goes at once
    others = [asyncio.create_task(coalescer.search(q, TWO, f"req-{i}")) for i, q in enumerate(questions) if i]
    await asyncio.sleep(0.05)
    assert len(gate.calls) == 1  # the others wait for it
    gate.open.set()
    return await asyncio.gather(first, *others, return_exceptions=True)


def test_searches_that_arrive_during_a_call_go_together(retriever):
    async def main():
        gate = RetrieverTransport(retriever.app, held=True)
        results = await _search_all(gate, QUESTIONS, max_batch=3)
        alone = [await _client(gate).paths(q, TWO, None) for q in QUESTIONS]
        return gate.calls[: len(QUESTIONS)], results, alone

    calls, results, alone = asyncio.run(main())
    assert [(path, queries) for path, queries, _ in calls[:3]] == [
        ("/v1/paths", QUESTIONS[:1]),
        ("/v1/paths/batch", QUESTIONS[1:4]),
        ("/v1/paths", QUESTIONS[4:]),
    ]
    assert [request_id for *_, request_id in calls[:3]] == ["req-0", "req-1,req-2,req-3", "req-4"]
    for result, single in zip(results, alone, strict=True):
        assert result.query == single.query
        assert [p.id for p in result.paths] == [p.id for p in single.paths]
        assert [p.prior for p in result.paths] == pytest.approx([p.prior for p in single.paths], rel=1e-4)


def test_a_batch_of_questions_goes_whole_with_the_searches_waiting_beside_it(retriever):
    """A batch request's questions are one group: coalesced with other waiting searches when they fit in
    max_batch, alone (never split) when they do not; each gets its own result, in order."""

    async def main():
        gate = RetrieverTransport(retriever.app, held=True)
        coalescer = SearchCoalescer(_client(gate), max_batch=3)
        first = asyncio.create_task(coalescer.search(QUESTIONS[0], TWO, "req-0"))
        await asyncio.sleep(0.05)
        waiting = [
            asyncio.create_task(coalescer.search_many(QUESTIONS[1:3], TWO, "req-1")),
            asyncio.create_task(coalescer.search(QUESTIONS[3], TWO, "req-2")),
            asyncio.create_task(coalescer.search_many(QUESTIONS, TWO, "req-3")),
        ]
        await asyncio.sleep(0.05)
        gate.open.set()
        return gate.calls, await asyncio.gather(first, *waiting)

    calls, (first, pair, single, all_five) = asyncio.run(main())
    assert [(path, queries, request_id) for path, queries, request_id in calls] == [
        ("/v1/paths", QUESTIONS[:1], "req-0"),
        ("/v1/paths/batch", QUESTIONS[1:4], "req-1,req-2"),
        ("/v1/paths/batch", QUESTIONS, "req-3"),
    ]
    assert [r.query for r in pair] == QUESTIONS[1:3] and single.query == QUESTIONS[3]
    assert [r.query for r in all_five] == QUESTIONS


def test_a_refused_batch_is_retried_one_by_one(retriever):
    """A query the retriever refuses fails its own request only; the others get their results."""
    questions = [QUESTIONS[0], QUESTIONS[1], "x" * (MAX_QUERY_CHARS + 1), QUESTIONS[2]]

    async def main():
        gate = RetrieverTransport(retriever.app, held=True)
        return gate.calls, await _search_all(gate, questions, max_batch=8)

    calls, results = asyncio.run(main())
    assert [path for path, *_ in calls] == ["/v1/paths", "/v1/paths/batch"] + ["/v1/paths"] * 3
    assert isinstance(results[2], RetrieverRejected) and results[2].status == 422
    assert [r.query for i, r in enumerate(results) if i != 2] == [q for i, q in enumerate(questions) if i != 2]


def test_retriever_down_fails_every_waiting_search(retriever):
    async def main():
        return await _search_all(RetrieverTransport(retriever.app, up=False, held=True), QUESTIONS, max_batch=8)

    assert all(isinstance(result, RetrieverUnavailable) for result in asyncio.run(main()))
