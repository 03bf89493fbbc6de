"""The batcher's wait for announced arrivals: concurrent requests still being retrieved join one
batch, a lone request starts at once, and an arrival that takes too long is not waited for."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from generator_service.batching import Batcher


def _batcher(
    executor: ThreadPoolExecutor, sizes: list[int], wait_s: float, max_items: int = 8, max_rows: int = 64
) -> Batcher[str, str]:
    def run_batch(items: list[str]) -> list[str]:
        sizes.append(len(items))
        return [item.upper() for item in items]

    return Batcher(
        run_batch, _rows, executor=executor, queue_size=16, max_items=max_items, max_rows=max_rows, wait_s=wait_s
    )


def _rows(item: str) -> int:
    """Rows of an item named "q<i>" (1) or "q<i>x<rows>"."""
    return int(item.partition("x")[2] or 1)


async def _request(batcher: Batcher[str, str], item: str, retrieval_s: float) -> str:
    """One request as the answer route runs it: announced while its facts are retrieved, then queued."""
    async with batcher.arriving(rows=_rows(item)):
        await asyncio.sleep(retrieval_s)
    [outcome] = await batcher.run([item], timeout_s=10)
    return outcome.result


def _scenario(
    wait_s: float, retrieval_s: list[float], max_items: int = 8, max_rows: int = 64, rows: list[int] | None = None
) -> tuple[list[str], list[int], list[float]]:
    """Requests whose retrievals take retrieval_s (and of `rows` rows, 1 by default); their answers, the batch
    sizes and the seconds after which each request had its answer."""
    sizes: list[int] = []
    items = [f"q{i}x{r}" for i, r in enumerate(rows or [1] * len(retrieval_s))]

    async def timed(batcher: Batcher[str, str], item: str, retrieval: float) -> tuple[str, float]:
        answer = await _request(batcher, item, retrieval)
        return answer, time.perf_counter() - start

    async def main() -> list[tuple[str, float]]:
        batcher = _batcher(executor, sizes, wait_s, max_items, max_rows)
        batcher.start()
        try:
            return await asyncio.gather(*(timed(batcher, item, s) for item, s in zip(items, retrieval_s, strict=True)))
        finally:
            await batcher.close()

    with ThreadPoolExecutor(max_workers=1) as executor:
        start = time.perf_counter()
        answers, done = zip(*asyncio.run(main()), strict=True)
        return list(answers), sizes, list(done)


def test_requests_still_being_retrieved_join_the_batch():
    # retrievals end 0, 40, ..., 280 ms apart: a fixed few-ms window would start 8 batches
    answers, sizes, _ = _scenario(wait_s=2.0, retrieval_s=[0.04 * i for i in range(8)])
    assert answers == [f"Q{i}X1" for i in range(8)]
    assert sizes == [8]


def test_a_lone_request_does_not_wait():
    _, sizes, done = _scenario(wait_s=5.0, retrieval_s=[0.0])
    assert sizes == [1]
    assert done[0] < 1.0


def test_the_wait_is_bounded():
    _, sizes, done = _scenario(wait_s=0.1, retrieval_s=[0.0, 0.0, 2.0])
    assert sizes == [2, 1]
    assert done[0] < 1.0 and 2.0 <= done[2] < 3.0


def test_a_full_batch_does_not_wait_for_more():
    _, sizes, done = _scenario(wait_s=5.0, retrieval_s=[0.0, 0.0, 1.0], max_items=2)
    assert sizes == [2, 1]
    assert done[0] < 0.5


def test_an_arrival_too_big_for_the_batch_is_not_waited_for():
    # 6 rows queued, at most 10 in a batch: a 6-row arrival would not fit, a 4-row one would
    _, sizes, done = _scenario(wait_s=5.0, retrieval_s=[0.0, 1.0], max_rows=10, rows=[6, 6])
    assert sizes == [1, 1]
    assert done[0] < 0.5
    _, sizes, done = _scenario(wait_s=5.0, retrieval_s=[0.0, 1.0], max_rows=10, rows=[6, 4])
    assert sizes == [2]
    assert done[0] >= 1.0


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
