"""The retriever service: `create_app(settings)` builds the FastAPI app (OpenAPI at /docs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retriever_service.encoder import Encoder
from retriever_service.routers import facts, ops, paths, search
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from retriever_service.store import StoreError
from shared.errors import error_responses, install_error_handlers
from shared.metrics import Metrics
from shared.middleware import ConcurrencyLimitMiddleware, ServiceMiddleware
from shared.openapi import Limits, document_limits
from shared.security import ApiKeyMiddleware, check_deployment

log = logging.getLogger(__name__)


def create_app(settings: RetrieverSettings | None = None, encoder: Encoder | None = None) -> FastAPI:
    """`encoder` may be passed in so that tests load the weights once for many apps."""
    settings = settings or RetrieverSettings()
    check_deployment(
        settings.environment,
        settings.host,
        settings.api_key,
        {"Qdrant": (settings.qdrant_url, settings.qdrant_api_key)},
    )
    metrics = Metrics("retriever")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = RetrieverState(
            settings=settings,
            metrics=metrics,
            encoder=encoder or Encoder.load(bf16=settings.encoder_bf16, threads=settings.torch_threads),
        )
        try:
            state.store()
        except StoreError as exc:  # a server that is down: start anyway, /readyz says 503 until it is up
            log.error("store not available at start-up: %s", exc)
        app.state.retriever = state
        yield
        state.close()

    app = FastAPI(
        title="kgrag retriever",
        version="0.1.0",
        lifespan=lifespan,
        responses=error_responses(400, 401, 413, 422, 429, 500, 503),
        description="Knowledge-graph facts in Qdrant: top-k search with entity linking and a prior p(d|x).",
    )
    install_error_handlers(app)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(ConcurrencyLimitMiddleware, max_in_flight=settings.max_in_flight)
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    for router in (search.router, paths.router, facts.router, ops.router):
        app.include_router(router)
    document_limits(app, _limits(settings))
    return app


def _limits(s: RetrieverSettings) -> Limits:
    k, query = {"maximum": s.max_k}, {"maxLength": s.max_query_chars}
    return {
        "SearchRequest": {"query": query, "k": k},
        "BatchSearchRequest": {"queries": {"maxItems": s.max_batch, "items": query}, "k": k},
        "IngestRequest": {"facts": {"maxItems": s.max_facts_per_request}},
        "PathSearchRequest": {"query": query, "k": k, **_path_limits(s)},
        "BatchPathSearchRequest": {"queries": {"maxItems": s.max_batch, "items": query}, "k": k, **_path_limits(s)},
    }


def _path_limits(s: RetrieverSettings) -> dict[str, dict]:
    return {
        "hops": {"maximum": s.max_hops},
        "beam": {"maximum": s.max_path_beam},
        "facts_per_step": {"maximum": s.max_facts_per_step},
        "paths_per_chain": {"maximum": s.max_paths_per_chain},
        "max_answers": {"maximum": s.max_answers},
    }
