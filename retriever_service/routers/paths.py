"""POST /v1/paths and /v1/paths/batch: relation paths from the question's entities, the answer set, and
whether the graph has an answer at all."""

from __future__ import annotations

from fastapi import APIRouter

from retriever_service.dependencies import State, check_k, check_queries, store_errors
from retriever_service.path_replies import path_limits, search_replies
from shared.errors import ServiceError
from shared.retriever_api import (
    BatchPathSearchRequest,
    BatchPathSearchResponse,
    PathOptions,
    PathSearchRequest,
    PathSearchResponse,
)

router = APIRouter(prefix="/v1", tags=["paths"])


@router.post("/paths", response_model=PathSearchResponse)
def paths(body: PathSearchRequest, state: State) -> PathSearchResponse:
    """Relation chains of 1 to `hops` steps from the linked entities, grounded in the KG: the k best paths
    with their prior p(d|x), each answer's probability P(y in Y|x), and the abstention verdict."""
    return _run(state, [body.query], body)[0]


@router.post("/paths/batch", response_model=BatchPathSearchResponse)
def paths_batch(body: BatchPathSearchRequest, state: State) -> BatchPathSearchResponse:
    """Many queries with the same options, searched together (one store call per chain step)."""
    if len(body.queries) > state.settings.max_batch:
        raise ServiceError(
            422, "batch_too_large", f"{len(body.queries)} queries; the limit is {state.settings.max_batch}"
        )
    return BatchPathSearchResponse(results=_run(state, body.queries, body))


def _run(state: State, queries: list[str], options: PathOptions) -> list[PathSearchResponse]:
    check_queries(state, queries)
    check_k(state, options.k)
    path_limits(state.settings, options)  # 422 for bounds past their limits, before the store is asked
    with store_errors(state):
        return search_replies(state.path_search(), state.settings, queries, options)
