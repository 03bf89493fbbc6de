"""POST /v1/search and /v1/search/batch: top-k facts with their prior p(d|x)."""

from __future__ import annotations

from fastapi import APIRouter

from retriever_service.dependencies import State, check_k, check_queries, store_errors
from retriever_service.retrieval import SearchResult
from shared.errors import ServiceError
from shared.retriever_api import (
    BatchSearchRequest,
    BatchSearchResponse,
    FactOut,
    LinkedEntityOut,
    SearchRequest,
    SearchResponse,
)

router = APIRouter(prefix="/v1", tags=["search"])


def _run(state: State, queries: list[str], k: int | None, link: bool) -> list[SearchResponse]:
    check_queries(state, queries)
    k = check_k(state, k)
    with store_errors(state):
        results = state.retriever().search(queries, k, link=link)
    return [_response(r, k, state.settings.tau) for r in results]


def _response(result: SearchResult, k: int, tau: float) -> SearchResponse:
    return SearchResponse(
        query=result.query,
        k=k,
        tau=tau,
        linked=[LinkedEntityOut(mention=e.mention, names=list(e.names), hinted=e.hinted) for e in result.linked],
        facts=[FactOut(**vars(f)) for f in result.facts],
    )


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, state: State) -> SearchResponse:
    """The k facts most relevant to the query, with cosine scores and the prior over them."""
    return _run(state, [body.query], body.k, body.link)[0]


@router.post("/search/batch", response_model=BatchSearchResponse)
def search_batch(body: BatchSearchRequest, state: State) -> BatchSearchResponse:
    """Many queries in one call (embedded together, searched as one Qdrant batch)."""
    if len(body.queries) > state.settings.max_batch:
        raise ServiceError(
            422, "batch_too_large", f"{len(body.queries)} queries; the limit is {state.settings.max_batch}"
        )
    return BatchSearchResponse(results=_run(state, body.queries, body.k, body.link))
