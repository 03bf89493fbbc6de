"""The generator service: `create_app(settings)` builds the FastAPI app (OpenAPI at /docs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import torch
from fastapi import FastAPI

from generator_service.rag import RagGenerator
from generator_service.retriever_client import RetrieverClient
from generator_service.routers import answer, ops, page
from generator_service.settings import GeneratorSettings
from generator_service.state import GeneratorMetrics, GeneratorState
from shared.errors import error_responses, install_error_handlers
from shared.middleware import ConcurrencyLimitMiddleware, ServiceMiddleware
from shared.openapi import Limits, document_limits
from shared.security import ApiKeyMiddleware, check_deployment


def create_app(
    settings: GeneratorSettings | None = None,
    generator: RagGenerator | None = None,
    *,
    retriever_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`generator` may be passed in (tests, or a model shared by several apps); without one the
    configured model is loaded in the background. `retriever_transport` replaces the network (tests)."""
    settings = settings or GeneratorSettings()
    check_deployment(
        settings.environment,
        settings.host,
        settings.api_key,
        {"retriever": (settings.retriever_url, settings.retriever_api_key)},
    )
    metrics = GeneratorMetrics.create()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        client = RetrieverClient(settings, metrics.retriever_seconds, transport=retriever_transport)
        state = GeneratorState(settings, metrics, client, generator)
        state.start()
        loading = None if generator else asyncio.create_task(state.load_model())
        app.state.generator = state
        yield
        if loading:
            await loading
        await state.close()

    app = FastAPI(
        title="kgrag generator",
        version="0.1.0",
        lifespan=lifespan,
        responses=error_responses(400, 401, 413, 422, 429, 500, 502, 503, 504),
        description="Answers questions from knowledge-graph facts: retrieval, then RAG-Token or "
        "RAG-Sequence generation with each fact's posterior share of the answer.",
    )
    install_error_handlers(app)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(ConcurrencyLimitMiddleware, max_in_flight=settings.max_in_flight)
    app.add_middleware(ServiceMiddleware, metrics=metrics.http, max_body_bytes=settings.max_body_bytes)
    for router in (answer.router, ops.router):
        app.include_router(router)
    app.include_router(page.router)
    document_limits(app, _limits(settings))
    return app


def _limits(s: GeneratorSettings) -> Limits:
    k, question = {"maximum": s.max_k}, {"maxLength": s.max_question_chars}
    options = {"k": k, "max_new_tokens": {"maximum": s.max_new_tokens}, "num_beams": {"maximum": s.max_beams}}
    return {
        "AnswerRequest": {"question": question, **options},
        "BatchAnswerRequest": {"questions": {"maxItems": s.max_batch, "items": question}, **options},
        "ScoreRequest": {"question": question, "answer": {"maxLength": s.max_answer_chars}, "k": k},
    }
