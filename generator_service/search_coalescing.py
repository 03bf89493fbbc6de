"""Concurrent path searches go to the retriever together, as one batch call.

Concurrent /v1/answer requests would otherwise reach the retriever one call each, served one after
the other there, while the model waits for the last of them (the answer batcher waits for
questions still being retrieved). Here a search goes out at once when none with its options (k,
hops) is in flight; those that arrive meanwhile wait for that call to end and then go as one
/v1/paths/batch call (at most `max_batch` queries, embedded together by the retriever), so a lone
request waits for nothing. The questions of one /v1/answer/batch request are a group that is never
split: it joins the waiting searches whole, and goes alone when it is larger than `max_batch`. A
coalesced call carries its requests' ids, comma-separated. When the retriever refuses a batch
(4xx), its queries are retried one by one, so that each request gets its own result or error; any
other failure (the retriever down) is every request's.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field

from generator_service.retriever_client import RetrieverClient, RetrieverMalformed, RetrieverRejected
from shared.retriever_api import PathOptions, PathSearchResponse


@dataclass
class _Search:
    query: str
    request_id: str | None
    future: asyncio.Future[PathSearchResponse] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Options = tuple[tuple[str, int | None], ...]  # a PathOptions as a hashable key


class SearchCoalescer:
    def __init__(self, client: RetrieverClient, max_batch: int) -> None:
        self._client, self._max_batch = client, max_batch
        self._waiting: defaultdict[Options, deque[list[_Search]]] = defaultdict(deque)  # groups not sent yet
        self._senders: dict[Options, asyncio.Task] = {}  # the task sending searches of those options

    async def search(self, query: str, options: PathOptions, request_id: str | None) -> PathSearchResponse:
        [result] = await self.search_many([query], options, request_id)
        return result

    async def search_many(
        self, queries: list[str], options: PathOptions, request_id: str | None
    ) -> list[PathSearchResponse]:
        """The queries' results, in order, from one retriever call (shared with other waiting searches
        when they fit); the first query's error, if any failed."""
        group = [_Search(query, request_id) for query in queries]
        key = tuple(sorted(options.model_dump().items()))
        self._waiting[key].append(group)
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send_all(key), name="paths")
        results = await asyncio.gather(*(search.future for search in group), return_exceptions=True)
        if failed := next((r for r in results if isinstance(r, BaseException)), None):
            raise failed
        return [r for r in results if not isinstance(r, BaseException)]  # all of them: none failed

    async def _send_all(self, key: Options) -> None:
        """Send the waiting searches of these options, a batch per call, until none is left."""
        try:
            while self._waiting[key]:
                await self._send(self._next_batch(self._waiting[key]), key)
        finally:
            del self._senders[key]

    def _next_batch(self, groups: deque[list[_Search]]) -> list[_Search]:
        """The first waiting group, then the next ones while the call stays within max_batch queries."""
        batch = groups.popleft()
        while groups and len(batch) + len(groups[0]) <= self._max_batch:
            batch = batch + groups.popleft()
        return batch

    async def _send(self, batch: list[_Search], key: Options) -> None:
        try:
            results = await self._call(batch, key)
        except RetrieverRejected as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # one query may be at fault: each gets its own answer
                await asyncio.gather(*(self._send([search], key) for search in batch))
        except Exception as exc:  # the retriever is down, or anything else: what each request would have got
            _fail(batch, exc)
        else:
            for search, result in zip(batch, results, strict=True):
                if not search.future.done():  # not cancelled meanwhile
                    search.future.set_result(result)

    async def _call(self, batch: list[_Search], key: Options) -> list[PathSearchResponse]:
        options = PathOptions(**dict(key))
        if len(batch) == 1:
            return [await self._client.paths(batch[0].query, options, batch[0].request_id)]
        ids = ",".join(dict.fromkeys(search.request_id for search in batch if search.request_id)) or None
        results = (await self._client.paths_batch([search.query for search in batch], options, ids)).results
        if len(results) != len(batch):
            raise RetrieverMalformed(f"the retriever answered {len(results)} results for {len(batch)} queries")
        return results


def _fail(batch: list[_Search], exc: Exception) -> None:
    for search in batch:
        if not search.future.done():
            search.future.set_exception(exc)
