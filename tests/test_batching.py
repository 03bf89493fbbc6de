"""The batcher's wait for announced arrivals: concurrent requests still being retrieved join one
batch, a lone request starts at once, and an arrival that takes too long is not waited for."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from generator_service.batching import Batcher


def _batcher(executor: ThreadPoolExecutor, sizes: list[int], wait_s: float, max_items: int = 8) -> Batcher[str, str]:
    def run_batch(items: list[str]) -> list[str]:
        sizes.append(len(items))
        return [item.upper() for item in items]

    return Batcher(run_batch, lambda item: 1, executor=executor, queue_size=16, max_items=max_items, max_rows=64,
                   wait_s=wait_s)


async def _request(batcher: Batcher[str, str], item: str, retrieval_s: float) -> str:
    """One request as the answer route runs it: announced while its facts are retrieved, then queued."""
    async with batcher.arriving():
        await asyncio.sleep(retrieval_s)
    [outcome] = await batcher.run([item], timeout_s=10)
    return outcome.result


def _scenario(wait_s: float, retrieval_s: list[float], max_items: int = 8) -> tuple[list[str], list[int], float]:
    """Requests whose retrievals take retrieval_s; their answers, the batch sizes and the seconds it all took."""
    sizes: list[int] = []

    async def main() -> list[str]:
        batcher = _batcher(executor, sizes, wait_s, max_items)
        batcher.start()
        try:
            return await asyncio.gather(*(_request(batcher, f"q{i}", s) for i, s in enumerate(retrieval_s)))
        finally:
            await batcher.close()

    with ThreadPoolExecutor(max_workers=1) as executor:
        start = time.perf_counter()
        answers = asyncio.run(main())
        return answers, sizes, time.perf_counter() - start


def test_requests_still_being_retrieved_join_the_batch():
    # retrievals end 0, 40, ..., 280 ms apart: a fixed few-ms window would start 8 batches
    answers, sizes, _ = _scenario(wait_s=2.0, retrieval_s=[0.04 * i for i in range(8)])
    assert answers == [f"Q{i}" for i in range(8)]
    assert sizes == [8]


def test_a_lone_request_does_not_wait():
    _, sizes, seconds = _scenario(wait_s=5.0, retrieval_s=[0.0])
    assert sizes == [1]
    assert seconds < 1.0


def test_the_wait_is_bounded():
    _, sizes, seconds = _scenario(wait_s=0.1, retrieval_s=[0.0, 0.0, 2.0])
    assert sizes == [2, 1]
    assert 2.0 <= seconds < 3.0


def test_a_full_batch_does_not_wait_for_more():
    _, sizes, seconds = _scenario(wait_s=5.0, retrieval_s=[0.0, 0.0, 1.0], max_items=2)
    assert sizes == [2, 1]
    assert seconds < 2.5


def test_an_arrival_that_fails_is_not_waited_for():
    sizes: list[int] = []

    async def failing(batcher: Batcher[str, str]) -> None:
        async with batcher.arriving():
            await asyncio.sleep(0.05)
            raise RuntimeError("retriever down")

    async def main() -> float:
        batcher = _batcher(executor, sizes, wait_s=5.0)
        batcher.start()
        start = time.perf_counter()
        results = await asyncio.gather(_request(batcher, "q", 0.0), failing(batcher), return_exceptions=True)
        elapsed = time.perf_counter() - start
        await batcher.close()
        assert results[0] == "Q" and isinstance(results[1], RuntimeError)
        return elapsed

    with ThreadPoolExecutor(max_workers=1) as executor:
        assert asyncio.run(main()) < 1.0
    assert sizes == [1]
