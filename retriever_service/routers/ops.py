"""Operations: /healthz (alive), /readyz (store open, encoder loaded), /metrics, GET /v1/stats."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from retriever_service.dependencies import State, store_errors
from retriever_service.store import StoreError
from shared.errors import error_response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: State):
    try:
        state.store().count()
    except StoreError as exc:
        state.store_failed(exc)
        return error_response(None, 503, "not_ready", f"store unavailable: {exc}", headers={"Retry-After": "1"})
    return {"status": "ready", "encoder": state.encoder.name, "backend": state.store().backend}


@router.get("/metrics", response_class=PlainTextResponse)  # the Prometheus text format
def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@router.get("/v1/stats")
def stats(state: State) -> dict:
    with store_errors(state):
        store = state.store()
        count, info = store.count(), store.info()
    state.facts_gauge.set(count)
    return {
        "facts": count,
        "entities": len(state.entities),
        "backend": store.backend,
        "collection": state.settings.collection,
        "encoder": {"name": state.encoder.name, "dim": state.encoder.dim, "bf16": state.encoder.bf16},
        "tau": state.settings.tau,
        "index": info,
    }
