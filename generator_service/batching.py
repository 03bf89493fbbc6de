"""Dynamic batching: requests that arrive together go through the model together.

A bounded asyncio queue feeds one worker task. The worker takes what is waiting, up to `max_items`
requests and `max_rows` decoding rows, runs the batch function on the model's single thread, and
resolves each request's future. Requests announce themselves while they are still being
retrieved (`arriving`); a batch waits (at most `wait_s`) for those that would fit in it, and starts
at once when none is on its way. A fixed window would either delay a lone request or split
concurrent ones whose retrieval finished a few ms apart into small batches. A full queue
is refused at once (QueueFull); a request that is cancelled or times out is skipped or its result
dropped, and a failing batch fails only its own requests. `close()` stops accepting, drains
what is queued, then ends the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_STOP = object()  # queued by close(), after the last request


class QueueFull(Exception):
    """The queue has no room for the items; none of them was queued."""


class ShuttingDown(Exception):
    """The batcher was closed: it takes nothing more."""


class GenerationTimeout(Exception):
    """The items' outcomes did not come within the time allowed."""


@dataclass(frozen=True)
class Outcome(Generic[R]):
    result: R
    queue_ms: float  # from enqueue to the start of its batch
    run_ms: float  # the whole batch's model time


@dataclass
class _Job(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[Outcome[R]]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], list[R]],
        rows_of: Callable[[T], int],
        *,
        executor: Executor,
        queue_size: int,
        max_items: int,
        max_rows: int,
        wait_s: float,
    ) -> None:
        self._run_batch, self._rows_of, self._executor = run_batch, rows_of, executor
        self._max_items, self._max_rows, self._wait_s = max_items, max_rows, wait_s
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self._carry: _Job | object | None = None  # taken from the queue but left for the next batch
        self._arriving: Counter[int] = Counter()  # rows -> items of that many rows inside an `arriving` block
        self._queued_rows = 0  # rows of the jobs in the queue
        self._changed = asyncio.Event()  # set when items are queued or leave an `arriving` block
        self._closed = False
        self._worker: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    @asynccontextmanager
    async def arriving(self, count: int = 1, rows: int = 1) -> AsyncIterator[None]:
        """Announce `count` items of at most `rows` rows each, to be queued as soon as this block ends (it
        wraps their retrieval), so that a batch starting meanwhile waits for them if they fit in it."""
        self._arriving[rows] += count
        try:
            yield
        finally:
            self._arriving[rows] -= count
            self._changed.set()

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="batch-worker")

    async def run(self, items: list[T], timeout_s: float) -> list[Outcome[R]]:
        """Queue all items (all or none: QueueFull if they do not fit) and wait for their outcomes."""
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        free = self._queue.maxsize - self._queue.qsize()
        if len(items) > free:
            raise QueueFull(f"the generation queue is full ({self._queue.maxsize} waiting); retry later")
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, self._rows_of(item), loop.create_future()) for item in items]
        for job in jobs:
            self._queue.put_nowait(job)
        self._queued_rows += sum(job.rows for job in jobs)
        self._changed.set()
        try:
            return await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), timeout_s)
        except TimeoutError as exc:  # wait_for has cancelled the futures: the worker will skip them
            raise GenerationTimeout(f"no answer within {timeout_s:g} s") from exc

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            await self._queue.put(_STOP)
            await self._worker

    async def _work(self) -> None:
        while (batch := await self._collect()) is not None:
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[_Job] | None:
        """The next batch (possibly empty, when all were cancelled), or None after close()."""
        first = self._carry if self._carry is not None else self._taken(await self._queue.get())
        self._carry = None
        if not isinstance(first, _Job):  # _STOP, queued by close()
            return None
        await self._await_arrivals(first.rows)
        batch, rows = [first], first.rows
        while len(batch) < self._max_items and not self._queue.empty():
            job = self._taken(self._queue.get_nowait())
            if not isinstance(job, _Job) or rows + job.rows > self._max_rows:  # _STOP, or no room left
                self._carry = job
                break
            batch.append(job)
            rows += job.rows
        return [job for job in batch if not job.future.done()]

    def _taken(self, job: _Job | object) -> _Job | object:
        """A job just taken from the queue (or _STOP), its rows no longer counted as queued."""
        self._queued_rows -= job.rows if isinstance(job, _Job) else 0
        return job

    async def _await_arrivals(self, first_rows: int) -> None:
        """Wait (at most wait_s) while an announced item that would fit in the batch is on its way,
        beside the first job (first_rows) and all queued ones."""
        deadline = asyncio.get_running_loop().time() + self._wait_s
        while self._queue.qsize() + 1 < self._max_items and self._arrival_fits(self._max_rows - first_rows):
            self._changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                return

    def _arrival_fits(self, free_rows: int) -> bool:
        room = free_rows - self._queued_rows
        return any(count > 0 and rows <= room for rows, count in self._arriving.items())

    async def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [job.item for job in batch])
        except Exception as exc:  # fail this batch's requests, keep the worker
            log.exception("batch of %d failed", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        run_ms = (time.perf_counter() - start) * 1000
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(Outcome(result, (start - job.enqueued) * 1000, run_ms))
