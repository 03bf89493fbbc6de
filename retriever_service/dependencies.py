"""FastAPI dependencies of the retriever: the app state, a failing store forgotten, and the checks of k and the
queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request

from retriever_service.state import RetrieverState
from retriever_service.store import StoreError
from shared.errors import ServiceError


def get_state(request: Request) -> RetrieverState:
    return request.app.state.retriever


State = Annotated[RetrieverState, Depends(get_state)]


@contextmanager
def store_errors(state: RetrieverState) -> Iterator[None]:
    """Run store work; a store that is down or failing is forgotten (the next request reconnects), and its
    StoreError goes on to the edge (shared/errors.py: 503 with Retry-After)."""
    try:
        yield
    except StoreError as exc:
        state.store_failed(exc)
        raise


def check_k(state: RetrieverState, k: int | None) -> int:
    k = k or state.settings.default_k
    if k > state.settings.max_k:
        raise ServiceError(422, "k_out_of_range", f"k must be between 1 and {state.settings.max_k}, got {k}")
    return k


def check_queries(state: RetrieverState, queries: list[str]) -> None:
    limit = state.settings.max_query_chars
    for query in queries:
        if not query.strip():
            raise ServiceError(422, "empty_query", "the query is empty")
        if len(query) > limit:
            raise ServiceError(422, "query_too_long", f"the query has {len(query)} characters; the limit is {limit}")
