"""The retriever's HTTP client: one `httpx.AsyncClient`, explicit timeouts, errors mapped in one place.

Every transport error (after bounded retries of connection failures, which are safe to repeat:
the request never reached the retriever), every retriever 5xx and a response that is not what the
retriever's API promises become `RetrieverUnavailable`; a retriever 4xx is `RetrieverRejected`,
with its status, code, message and Retry-After, and a 401 or 403 `RetrieverAuthFailed` (the
generator's key, not the client's request). None of them knows what the service answers
(shared/errors.py does). The client holds no failure state, so the service recovers as soon as the
retriever is back.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import httpx
from prometheus_client import Histogram
from pydantic import BaseModel, ValidationError

from generator_service.settings import GeneratorSettings
from shared.middleware import REQUEST_ID_HEADER
from shared.retriever_api import (
    BatchPathSearchRequest,
    BatchPathSearchResponse,
    PathOptions,
    PathSearchRequest,
    PathSearchResponse,
)

Model = TypeVar("Model", bound=BaseModel)
_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout)


class RetrieverError(Exception):
    """A retriever call that gave no result."""


class RetrieverUnavailable(RetrieverError):
    """The retriever is unreachable or failing (a transport error after the retries, or a 5xx)."""


class RetrieverMalformed(RetrieverUnavailable):
    """The retriever answered, but not with what its API promises."""


class RetrieverAuthFailed(RetrieverError):
    """The retriever refused the generator's own credentials (401, 403)."""


class RetrieverRejected(RetrieverError):
    """The retriever refused the request (4xx): the query was at fault. Its status, code and Retry-After."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class RetrieverClient:
    def __init__(
        self, settings: GeneratorSettings, call_seconds: Histogram, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        timeout = httpx.Timeout(settings.retriever_read_timeout_s, connect=settings.retriever_connect_timeout_s)
        key = settings.retriever_api_key
        auth = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=settings.retriever_url, timeout=timeout, transport=transport, headers=auth
        )
        self._retries, self._backoff_s = settings.retriever_retries, settings.retriever_backoff_s
        self._call_seconds = call_seconds

    async def paths(self, query: str, options: PathOptions, request_id: str | None) -> PathSearchResponse:
        body = PathSearchRequest(query=query, **options.model_dump())
        response = await self._call("POST", "/v1/paths", request_id, body)
        return _parse(response, PathSearchResponse)

    async def paths_batch(
        self, queries: list[str], options: PathOptions, request_id: str | None
    ) -> BatchPathSearchResponse:
        body = BatchPathSearchRequest(queries=queries, **options.model_dump())
        response = await self._call("POST", "/v1/paths/batch", request_id, body)
        return _parse(response, BatchPathSearchResponse)

    async def check_ready(self, request_id: str | None) -> None:
        """Returns if the retriever's /readyz answers 2xx; raises RetrieverUnavailable when it is down or not ready."""
        await self._call("GET", "/readyz", request_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, request_id: str | None, body: BaseModel | None = None
    ) -> httpx.Response:
        start = time.perf_counter()
        try:
            response = await self._send(method, path, request_id, body)
        except httpx.HTTPError as exc:
            raise RetrieverUnavailable(f"retriever unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            self._call_seconds.observe(time.perf_counter() - start)
        if response.status_code >= 400:
            raise _error(response)
        return response

    async def _send(self, method: str, path: str, request_id: str | None, body: BaseModel | None) -> httpx.Response:
        headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        if content is not None:
            headers["content-type"] = "application/json"
        attempt = 0
        while True:
            try:
                return await self._http.request(method, path, content=content, headers=headers)
            except _RETRIED:
                if attempt >= self._retries:
                    raise
                await asyncio.sleep(self._backoff_s * 2**attempt)
                attempt += 1


def _error(response: httpx.Response) -> RetrieverError:
    """A retriever error response (shared shape, or anything else) as the error to raise."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "retriever_error", response.text[:200]
    if response.status_code in (401, 403):  # our credentials, not the client's request
        return RetrieverAuthFailed(
            f"the retriever refused the generator's API key (KGRAG_GENERATOR_RETRIEVER_API_KEY): {message}"
        )
    if response.status_code >= 500:
        return RetrieverUnavailable(f"retriever failed (HTTP {response.status_code} {code}): {message}")
    # a 429 tells the client when to come back
    return RetrieverRejected(response.status_code, code, f"retriever: {message}", response.headers.get("retry-after"))


def _parse(response: httpx.Response, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise RetrieverMalformed(f"malformed retriever response: {exc.error_count()} schema errors") from exc
